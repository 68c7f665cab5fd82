import {getLlama} from "node-llama-cpp";
import fs from "node:fs";
const [vocab, idsfile, special] = process.argv.slice(2);
const lines = fs.readFileSync(idsfile, "utf8").split("\n").filter((l, i, a) => i < a.length - 1);
const llama = await getLlama({gpu: false, build: "never", logLevel: "error"});
const model = await llama.loadModel({modelPath: vocab, vocabOnly: true});
const out = lines.map(l => { const ids = l.trim() ? l.trim().split(/\s+/).map(Number) : []; return JSON.stringify(model.detokenize(ids, special === "1")); });
process.stdout.write(out.join("\n") + "\n");
