"""The `arithmetic` built-in: generated addition and multiplication word problems, in English and Chinese, with
exact answers (a verifiable task for GRPO). Seeded: the same records on every machine.

Each record:
    {"prompt": "Tom has 7 apples and gets 5 more. How many apples does Tom have now?",
     "reference": "12",                                     the answer the exact_answer reward checks
     "response": "<think>7 + 5 = 12</think><answer>12</answer>",   a worked solution (the SFT target)
     "lang": "en", "op": "add"}

Operands are small (addition up to 30, multiplication up to 9 × 9) so a tiny model can learn the task on a CPU
in minutes; the templates vary the wording so the model must read the numbers, not memorise sentences.
"""

from __future__ import annotations

import random
from typing import Iterator

ADD_EN = ["{name} has {a} {item} and gets {b} more. How many {item} does {name} have now?",
          "There are {a} {item} in a box and {b} in another. How many {item} are there in total?",
          "What is {a} plus {b}?"]
MUL_EN = ["Each bag holds {a} {item}. How many {item} are in {b} bags?",
          "{name} buys {b} packs of {item} with {a} in each pack. How many {item} is that?",
          "What is {a} times {b}?"]
ADD_ZH = ["{name}有{a}个{item_zh}，又得到{b}个。{name}现在有多少个{item_zh}？",
          "一个盒子里有{a}个{item_zh}，另一个盒子里有{b}个。一共有多少个{item_zh}？",
          "{a}加{b}等于多少？"]
MUL_ZH = ["每袋有{a}个{item_zh}，{b}袋一共有多少个{item_zh}？",
          "{name}买了{b}包{item_zh}，每包{a}个。一共有多少个{item_zh}？",
          "{a}乘以{b}等于多少？"]
NAMES = ["Tom", "Anna", "Li", "Wang"]
NAMES_ZH = ["小明", "小红", "李雷", "王芳"]
ITEMS = [("apples", "苹果"), ("pens", "笔"), ("books", "书"), ("eggs", "鸡蛋")]
INSTRUCTION = {"en": " Think, then give the answer.", "zh": "请先思考，再给出答案。"}

SEED = 20
SIZE = 3000


def problem(rng: random.Random) -> dict:
    op = rng.choice(["add", "mul"])
    lang = rng.choice(["en", "zh"])
    a, b = (rng.randint(0, 30), rng.randint(0, 30)) if op == "add" else (rng.randint(1, 9), rng.randint(1, 9))
    answer = a + b if op == "add" else a * b
    templates = {("add", "en"): ADD_EN, ("mul", "en"): MUL_EN, ("add", "zh"): ADD_ZH, ("mul", "zh"): MUL_ZH}[op, lang]
    item, item_zh = rng.choice(ITEMS)
    name = rng.choice(NAMES if lang == "en" else NAMES_ZH)
    prompt = rng.choice(templates).format(a=a, b=b, name=name, item=item, item_zh=item_zh) + INSTRUCTION[lang]
    sign = "+" if op == "add" else "*"
    return {"prompt": prompt, "reference": str(answer),
            "response": f"<think>{a} {sign} {b} = {answer}</think><answer>{answer}</answer>", "lang": lang, "op": op}


def arithmetic_records(n: int = SIZE, seed: int = SEED) -> Iterator[dict]:
    rng = random.Random(seed)
    for _ in range(n):
        yield problem(rng)
