// Prints llama.cpp's token ids for each text of texts.inp, one line per text in the .out format
// (" id id ..."). Run from a folder where node-llama-cpp@3.21.1 is installed:
//   node oracle.mjs VOCAB.gguf texts.inp PARSE_SPECIAL(0|1) > NAME.parse-special-N.out
import {getLlama} from "node-llama-cpp";
import fs from "node:fs";
const [vocab, file, special] = process.argv.slice(2);
const texts = fs.readFileSync(file).toString("utf8").split("\n__ggml_vocab_test__\n");
const llama = await getLlama({gpu: false, build: "never", logLevel: "error"});
const model = await llama.loadModel({modelPath: vocab, vocabOnly: true});
const lines = texts.map(t => Array.from(model.tokenize(t, special === "1")).map(id => " " + id).join(""));
process.stdout.write(lines.join("\n") + "\n");
