#!/usr/bin/env python3
"""Regenerates texts.inp: 158 random mixtures of scripts, whitespace kinds, digits, emoji,
combining marks, unassigned code points and special-token texts (seeded, deterministic)."""
import random
import sys

def corpus1():
    random.seed(5)
    pools = [
        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ", "0123456789", " ", "  ", "\t", "\n", "\r\n",
        ".,;:!?'\"()[]{}<>-_/\\|@#$%^&*+=~`", "'s 're 've 'll 'd 'm 't 'S 'RE",
        "éèêëàâäôöûüçñÀÉÖß", "中文字符测试我想在工作", "日本語のテキスト", "한국어 텍스트", "нещо на Български",
        "ကာន់តែពិសេស", "مرحبا بالعالم", "שלום", "🦙🚀😁😶‍🌫️✅👍🏽", "\u00a0", "\u0085", "\u2028", "\u3000",
        "\u200b\u200d\ufeff", "\u0301\u0308", "ǅǈ", "½¾²³", "Ⅻ", "\U000e0001", "\u0378", "\U0010fffd", "\u2581",
        "<s>", "</s>", "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|eot_id|>", "<|begin_of_text|>",
        "[CLS]", "[SEP]", "<unk>", "<0x41>", "    ", "\n\n\n", " \n ", "...", "!!!", "1234567", "3.14", "x²",
    ]
    texts = []
    for _ in range(1500):
        s = ""
        for _ in range(random.randint(1, 12)):
            p = random.choice(pools)
            if len(p) > 8 and random.random() < 0.7:
                a = random.randint(0, len(p) - 1)
                s += p[a:a + random.randint(1, 6)]
            else:
                s += p
        texts.append(s)
    return texts

def corpus2():
    random.seed(11)
    ws = [" ", "  ", "\t", "\n", "\r", "\u00a0", "\u0085", "\u2028", "\u3000", "\u2009", "\u200a", "\u1680",
          "\u202f", "\u205f", "\v", "\f"]
    words = ["Hello", "world", "I'm", "DON'T", "it's", "we've", "3", "33", "3333", "½", "٣٤", "१२", "中文", "日本",
             "한국", "🦙", "😶‍🌫️", "é", "e\u0301", "ß", "İ", "ǅ", "Ⅻ", "\u0378", "\U000e0001", "\ue000", "$", "€",
             "©", "+", "<", ">", "^", "|", "~", "`", "...", "—", "“", "”", "«", "»", "。", "，", "、", "！", "？",
             "<s>", "</s>", "<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<|im_start|>", "[CLS]", "[MASK]",
             "<unk>", "\u2581", "\u2581\u2581", "x\u2581y", "\x00", "\x7f", "\x1b"]
    texts = []
    for _ in range(1500):
        s = ""
        for _ in range(random.randint(1, 10)):
            if random.random() < 0.6:
                s += random.choice(words)
            else:
                s += "".join(random.choice(ws) for _ in range(random.randint(1, 4)))
        texts.append(s)
    return texts

if __name__ == "__main__":
    t1, t2 = corpus1(), corpus2()
    texts = [t1[i] for i in range(0, 1500, 19)] + [t2[i] for i in range(3, 1500, 19)]
    out = sys.argv[1] if len(sys.argv) > 1 else "texts.inp"
    with open(out, "wb") as f:
        f.write(b"\n__ggml_vocab_test__\n".join(t.encode("utf-8") for t in texts))
