#!/usr/bin/env python3
"""Reference renderer for the chat-template tests: python3-jinja2 configured as Hugging Face
transformers configures it (ImmutableSandboxedEnvironment, trim_blocks, lstrip_blocks, loop
controls, {% generation %}, raise_exception, strftime_now, and a tojson that is json.dumps without HTML escaping).

Usage: render_jinja.py CASES.json > RESULTS.json
CASES.json: {"cases": [{"id": str, "template": str, "context": {...}}, ...]}
RESULTS.json: [{"id": str, "ok": true, "output": str} | {"id": str, "ok": false, "error": str}]
"""
import json
import sys
from datetime import datetime

import jinja2
import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment


def raise_exception(message):
    raise jinja2.exceptions.TemplateError(message)


def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                      sort_keys=sort_keys)


def strftime_now(fmt):
    return datetime.now().strftime(fmt)


class GenerationTag(jinja2.ext.Extension):
    """transformers' AssistantTracker {% generation %} tag, without the index tracking: the body
    renders as it is."""

    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        call = self.call_method("_render", [])
        return jinja2.nodes.CallBlock(call, [], [], body).set_lineno(lineno)

    def _render(self, caller):
        return caller()


def make_env():
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[GenerationTag, jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env


def main():
    with open(sys.argv[1], encoding="utf-8") as f:
        cases = json.load(f)["cases"]
    env = make_env()
    compiled = {}
    results = []
    for case in cases:
        try:
            src = case["template"]
            if src not in compiled:
                compiled[src] = env.from_string(src)
            out = compiled[src].render(**case["context"])
            results.append({"id": case["id"], "ok": True, "output": out})
        except Exception as e:  # noqa: BLE001 - any template failure is a result
            results.append({"id": case["id"], "ok": False, "error": f"{type(e).__name__}: {e}"})
    json.dump(results, sys.stdout, ensure_ascii=False)


if __name__ == "__main__":
    main()
