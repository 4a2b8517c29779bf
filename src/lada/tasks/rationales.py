"""Step-by-step rationales rendered from reasoning-gym metadata, one renderer per task family.

reasoning-gym gives a question, a final answer and the numbers behind them, but no reasoning. The
renderers here turn those numbers into short steps, one computation per line, so a small model can
learn the procedure rather than the answer. Each step reads `<left> = <value>`; the last step's
value is the final answer, which `check_final_value` verifies against the generator's gold answer.

All families write multiplication as `*` (the sign the arithmetic questions use), so every domain
shares one small alphabet.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

Renderer = Callable[[Mapping[str, Any]], list[str]]

_INTEGER = re.compile(r"-?\d+")


class RationaleMismatchError(ValueError):
    """A rendered rationale ends in a value other than the generator's gold answer."""


def final_value(rationale: str) -> str:
    """The value after the last `=` on the rationale's last non-empty line ('' if none)."""
    lines = [line.strip() for line in rationale.splitlines() if line.strip()]
    if not lines or "=" not in lines[-1]:
        return ""
    return lines[-1].rsplit("=", 1)[1].strip()


def check_final_value(rationale: str, answer: str, where: str) -> None:
    """Raise if the rationale's last computed value differs from the integer gold `answer`.

    `where` names the item in the error, so a renderer bug points at the generator input.
    """
    if not _INTEGER.fullmatch(answer.strip()):
        raise RationaleMismatchError(f"{where}: answer: {answer!r} is not an integer")
    value = final_value(rationale)
    if not _INTEGER.fullmatch(value) or int(value) != int(answer):
        raise RationaleMismatchError(
            f"{where}: rationale ends in {value!r} but the gold answer is {answer!r}:\n{rationale}"
        )


# ---------------------------------------------------------------------------------------------
# shared step builders


def running_sum_steps(terms: Sequence[int]) -> list[str]:
    """`a + b = s1`, `s1 + c = s2`, ...: a sum one addition at a time (no step for one term)."""
    steps: list[str] = []
    total = terms[0]
    for term in terms[1:]:
        steps.append(f"{total} + {term} = {total + term}")
        total += term
    return steps


def euclid_steps(first: int, second: int) -> tuple[list[str], int]:
    """Euclid's algorithm as `x = q * y + r` lines, larger number first; returns (steps, gcd)."""
    larger, smaller = max(first, second), min(first, second)
    steps: list[str] = []
    if smaller == 0:
        return steps, larger
    while smaller:
        quotient, remainder = divmod(larger, smaller)
        steps.append(f"{larger} = {quotient} * {smaller} + {remainder}")
        larger, smaller = smaller, remainder
    return steps, larger


def multiplication_steps(left: int, right: int) -> tuple[list[str], int]:
    """`left * right` by long multiplication: one partial product per non-zero digit of `right`
    (least significant first), then the partial products summed one addition at a time."""
    sign = -1 if right < 0 else 1
    digits = str(abs(right))
    partials: list[tuple[int, int]] = []  # (multiplier with its place value, partial product)
    for place, digit in enumerate(reversed(digits)):
        if digit != "0":
            multiplier = sign * int(digit) * 10**place
            partials.append((multiplier, left * multiplier))
    if not partials:
        return [f"{left} * {right} = 0"], 0
    steps = [f"{left} * {multiplier} = {product}" for multiplier, product in partials]
    steps += running_sum_steps([product for _, product in partials])
    return steps, left * right


# ---------------------------------------------------------------------------------------------
# one renderer per family


def parse_signed_chain(expression: str) -> tuple[list[int], list[str]]:
    """`'4 - -1 + 7'` -> ([4, -1, 7], ['-', '+']): numbers and the binary signs between them."""
    tokens = expression.split()
    if len(tokens) % 2 == 0:
        raise ValueError(f"expression: {expression!r} is not `number (op number)*`")
    numbers = [int(token) for token in tokens[0::2]]
    operators = tokens[1::2]
    return numbers, operators


def chain_sum_rationale(metadata: Mapping[str, Any]) -> list[str]:
    """`4 - 1 - 7`: `4 - 1 = 3`, `3 - 7 = -4` (left to right, one operation a line)."""
    numbers, operators = parse_signed_chain(str(metadata["expression"]))
    total = numbers[0]
    steps: list[str] = []
    for operator, number in zip(operators, numbers[1:], strict=True):
        if operator not in ("+", "-"):
            raise ValueError(f"expression: unexpected operator {operator!r}")
        result = total + number if operator == "+" else total - number
        steps.append(f"{total} {operator} {number} = {result}")
        total = result
    if not steps:
        steps.append(f"{total} = {total}")
    return steps


def products_rationale(metadata: Mapping[str, Any]) -> list[str]:
    """`47 * 36`: `47 * 6 = 282`, `47 * 30 = 1410`, `282 + 1410 = 1692`; more factors fold left."""
    factors = [int(part) for part in str(metadata["expression"]).split("*")]
    product = factors[0]
    steps: list[str] = []
    for factor in factors[1:]:
        new_steps, product = multiplication_steps(product, factor)
        steps += new_steps
    if not steps:
        steps.append(f"{product} = {product}")
    return steps


def leg_counting_rationale(metadata: Mapping[str, Any]) -> list[str]:
    """`13 woodlouse * 14 = 182` per animal (legs per animal from reasoning-gym), then the sum."""
    from reasoning_gym.arithmetic.leg_counting import ANIMALS

    animals: Mapping[str, int] = metadata["animals"]
    steps = [
        f"{count} {animal} * {ANIMALS[animal]} = {count * ANIMALS[animal]}"
        for animal, count in animals.items()
    ]
    steps += running_sum_steps([count * ANIMALS[animal] for animal, count in animals.items()])
    return steps


def gcd_rationale(metadata: Mapping[str, Any]) -> list[str]:
    """Euclid per pair, `780 = 1 * 461 + 319` ..., closed by `gcd(780, 461) = 1`; more numbers
    fold left: gcd(a, b, c) = gcd(gcd(a, b), c)."""
    numbers = [int(number) for number in metadata["numbers"]]
    divisor = numbers[0]
    steps: list[str] = []
    for number in numbers[1:]:
        euclid, result = euclid_steps(divisor, number)
        steps += euclid
        steps.append(f"gcd({divisor}, {number}) = {result}")
        divisor = result
    return steps


def lcm_rationale(metadata: Mapping[str, Any]) -> list[str]:
    """lcm(a, b) = (a / gcd) * b: Euclid for the gcd, then `a / g = k`, `k * b = l`; more numbers
    fold left: lcm(a, b, c) = lcm(lcm(a, b), c)."""
    numbers = [int(number) for number in metadata["numbers"]]
    multiple = numbers[0]
    steps: list[str] = []
    for number in numbers[1:]:
        euclid, divisor = euclid_steps(multiple, number)
        steps += euclid
        steps.append(f"gcd({multiple}, {number}) = {divisor}")
        quotient = multiple // divisor
        steps.append(f"{multiple} / {divisor} = {quotient}")
        steps.append(f"{quotient} * {number} = {quotient * number}")
        multiple = quotient * number
    return steps


_BINARY_SIGNS: dict[type[ast.operator], str] = {
    ast.Add: "+",
    ast.Sub: "-",
    ast.Mult: "*",
    ast.Div: "/",
    ast.FloorDiv: "/",
}


def _evaluate(node: ast.expr, steps: list[str]) -> int:
    """Post-order evaluation that appends one `a op b = c` line per operation.

    `/` is floor division, as in reasoning-gym's basic_arithmetic answers.
    """
    if isinstance(node, ast.Constant) and isinstance(node.value, int):
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        if isinstance(node.operand, ast.Constant):  # a signed literal such as -5: no step
            value = _evaluate(node.operand, steps)
            return -value if isinstance(node.op, ast.USub) else value
        value = _evaluate(node.operand, steps)
        if isinstance(node.op, ast.UAdd):
            return value
        steps.append(f"-({value}) = {-value}")
        return -value
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY_SIGNS:
        left = _evaluate(node.left, steps)
        right = _evaluate(node.right, steps)
        if isinstance(node.op, ast.Add):
            result = left + right
        elif isinstance(node.op, ast.Sub):
            result = left - right
        elif isinstance(node.op, ast.Mult):
            result = left * right
        else:
            if right == 0:
                raise ZeroDivisionError(f"division by zero in {ast.unparse(node)!r}")
            result = left // right
        steps.append(f"{left} {_BINARY_SIGNS[type(node.op)]} {right} = {result}")
        return result
    raise ValueError(f"expression: unsupported element {ast.unparse(node)!r}")


def basic_arithmetic_rationale(metadata: Mapping[str, Any]) -> list[str]:
    """`-(3 + 4) * 2`: `3 + 4 = 7`, `-(7) = -7`, `-7 * 2 = -14` (usual precedence, innermost
    first, left to right)."""
    expression = str(metadata["expression"])
    tree = ast.parse(expression, mode="eval")
    steps: list[str] = []
    value = _evaluate(tree.body, steps)
    if not steps:
        steps.append(f"{value} = {value}")
    return steps


RENDERERS: dict[str, Renderer] = {
    "chain_sum": chain_sum_rationale,
    "products": products_rationale,
    "leg_counting": leg_counting_rationale,
    "gcd": gcd_rationale,
    "lcm": lcm_rationale,
    "basic_arithmetic": basic_arithmetic_rationale,
}
"""Renderer per reasoning-gym dataset name."""
