# Included by CMakeLists.txt. realm_chat_template: the Jinja2-subset interpreter and chat templates.
find_package(nlohmann_json REQUIRED)

add_library(realm_chat_template jinja_lexer.cc jinja_parser.cc jinja_value.cc jinja_eval.cc
                                chat_template.cc)
target_include_directories(realm_chat_template PUBLIC ${CMAKE_SOURCE_DIR}/src)
target_link_libraries(realm_chat_template PUBLIC realm_gguf PRIVATE nlohmann_json::nlohmann_json)
# The realm CLI links realm_<layer> targets; consumers of realm_tokenizer get chat templates too.
if(TARGET realm_tokenizer)
  target_link_libraries(realm_tokenizer INTERFACE realm_chat_template)
endif()

realm_test(chat_template_test
           SOURCES jinja_test.cc chat_template_test.cc
           LIBS realm_chat_template nlohmann_json::nlohmann_json)

# `realm template` end to end against python3-jinja2 (needs the realm binary: not in low-layer builds).
if(NOT REALM_LOW_LAYERS_ONLY)
  add_test(NAME realm_template_cli
           COMMAND python3 ${CMAKE_CURRENT_SOURCE_DIR}/testdata/cli_template_check.py
                   $<TARGET_FILE:realm> ${REALM_SHARED_DIR})
endif()
