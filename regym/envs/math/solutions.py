"""Worked solutions: short step-by-step reasoning ending in ``\\boxed{}``, computed from the problem.

The single-turn expert's demonstrations (and so the SFT data of a single-turn run). Each
solver reads the structure reasoning-gym records in an item's metadata (the expression,
the equation, the numbers) and computes every step itself, e.g. for a chain sum
``"58 + 26 = 84, 84 - 34 = 50, \\boxed{50}"``; nothing is copied from the reference answer.
``worked_solution`` checks the computed answer against the reference with the env's grader
and returns None when the family has no solver or the two disagree, so a demonstration is
never wrong; the expert then answers with the bare reference (``docs/math.md``).
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Mapping
from decimal import Decimal
from fractions import Fraction
from math import gcd
from typing import Any

from regym.envs.math.answers import grade, last_boxed

_OPERATORS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/"}
MAX_EXPRESSION_CHARS = 500
"""Metadata longer than this is not parsed (reasoning-gym's expressions are far shorter)."""


class _Unsolvable(ValueError):
    """The problem's metadata is not of the shape a solver knows."""


def _number_text(value: Fraction, decimals: bool) -> str:
    if value.denominator == 1:
        return str(value.numerator)
    if decimals:
        exact = Decimal(value.numerator) / Decimal(value.denominator)
        return format(exact.normalize(), "f")
    return f"{value.numerator}/{value.denominator}"


def _constant(node: ast.AST) -> Fraction:
    """A literal number, or a negated one (``-77``), as an exact fraction."""
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        value = _constant(node.operand)
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return Fraction(Decimal(repr(node.value)))
    raise _Unsolvable(f"not a number: {ast.dump(node)[:80]}")


def _apply(operator: type, left: Fraction, right: Fraction) -> Fraction:
    if operator is ast.Add:
        return left + right
    if operator is ast.Sub:
        return left - right
    if operator is ast.Mult:
        return left * right
    if right == 0:
        raise _Unsolvable("division by zero")
    return left / right


def _product_steps(left: Fraction, right: Fraction) -> str:
    """``58 * 26 = 58 * 20 + 58 * 6 = 1160 + 348 = 1508``: long multiplication by the right factor's digits."""
    text = f"{left.numerator} * {right.numerator}"
    if min(abs(left), abs(right)) < 10 or left.denominator != 1 or right.denominator != 1:
        return f"{text} = {left * right}"
    sign, digits = (-1 if right < 0 else 1), str(abs(right.numerator))
    parts = [(int(digit) * 10 ** (len(digits) - 1 - place)) for place, digit in enumerate(digits) if digit != "0"]
    if len(parts) == 1:
        return f"{text} = {left * right}"
    partials = [left.numerator * sign * part for part in parts]
    return (f"{text} = {' + '.join(f'{left.numerator} * {sign * part}' for part in parts)} = "
            f"{' + '.join(map(str, partials))} = {left * right}")


def _reduce(node: ast.AST, steps: list[str], decimals: bool) -> Fraction:
    """Evaluate ``node`` in the order a person would (left to right, products before sums), one step per operator."""
    if isinstance(node, ast.UnaryOp) and isinstance(node.operand, ast.BinOp | ast.UnaryOp):
        inner = _reduce(node.operand, steps, decimals)
        if isinstance(node.op, ast.UAdd):
            return inner
        if not isinstance(node.op, ast.USub):
            raise _Unsolvable(f"operator {type(node.op).__name__}")
        steps.append(f"-({_number_text(inner, decimals)}) = {_number_text(-inner, decimals)}")
        return -inner
    if not isinstance(node, ast.BinOp):
        return _constant(node)
    operator = type(node.op)
    if operator not in _OPERATORS:
        raise _Unsolvable(f"operator {operator.__name__}")
    left = _reduce(node.left, steps, decimals)
    right = _reduce(node.right, steps, decimals)
    result = _apply(operator, left, right)
    if operator is ast.Mult and not decimals:
        steps.append(_product_steps(left, right))
    else:
        steps.append(f"{_number_text(left, decimals)} {_OPERATORS[operator]} {_number_text(right, decimals)} = "
                     f"{_number_text(result, decimals)}")
    return result


def _parse(expression: Any) -> ast.AST:
    if not isinstance(expression, str) or len(expression) > MAX_EXPRESSION_CHARS:
        raise _Unsolvable("no expression")
    try:
        return ast.parse(expression.replace("×", "*").replace("÷", "/"), mode="eval").body
    except SyntaxError as error:
        raise _Unsolvable(f"expression does not parse: {error}") from None


def _boxed(steps: list[str], answer: str) -> str:
    return ", ".join([*steps, f"\\boxed{{{answer}}}"])


def solve_expression(metadata: Mapping[str, Any]) -> str:
    """chain_sum, decimal_chain_sum, products, basic_arithmetic: one step per operator."""
    expression = metadata.get("expression")
    decimals = isinstance(expression, str) and "." in expression
    steps: list[str] = []
    result = _reduce(_parse(expression), steps, decimals)
    return _boxed(steps, _number_text(result, decimals))


def _linear_terms(node: ast.AST, variable: str) -> tuple[Fraction, Fraction]:
    """``(a, b)`` with ``node == a * variable + b``; a product of two variable terms is not linear."""
    if isinstance(node, ast.Name):
        if node.id != variable:
            raise _Unsolvable(f"unknown name {node.id}")
        return Fraction(1), Fraction(0)
    if not isinstance(node, ast.BinOp):
        return Fraction(0), _constant(node)
    (a1, b1), (a2, b2) = _linear_terms(node.left, variable), _linear_terms(node.right, variable)
    if isinstance(node.op, ast.Add):
        return a1 + a2, b1 + b2
    if isinstance(node.op, ast.Sub):
        return a1 - a2, b1 - b2
    if isinstance(node.op, ast.Mult) and (a1 == 0 or a2 == 0):
        return a1 * b2 + a2 * b1, b1 * b2
    raise _Unsolvable("not linear")


def solve_linear_equation(metadata: Mapping[str, Any]) -> str:
    """simple_equations: collect ``a*x + b = c``, move ``b`` across, divide by ``a``."""
    equation, x = metadata.get("equation"), metadata.get("variable")
    if not isinstance(equation, str) or equation.count("=") != 1 or not isinstance(x, str):
        raise _Unsolvable("no equation")
    left_text, right_text = (side.strip() for side in equation.split("="))
    (a, b), (a_right, c) = (_linear_terms(_parse(side), x) for side in (left_text, right_text))
    if a_right != 0:
        raise _Unsolvable("variable on both sides")
    if a == 0:
        raise _Unsolvable("no unique solution")
    steps, term = [], f"{_number_text(a, False)}*{x}" if a != 1 else x
    collected = f"{term} + {_number_text(b, False)}" if b > 0 else f"{term} - {_number_text(-b, False)}"
    if b != 0 and left_text.replace(" ", "") != collected.replace(" ", ""):
        steps.append(f"{left_text} = {collected}")
    if b != 0:
        sign = "-" if b > 0 else "+"
        steps.append(f"{term} = {_number_text(c, False)} {sign} {_number_text(abs(b), False)} = "
                     f"{_number_text(c - b, False)}")
    value = (c - b) / a
    if a != 1:
        steps.append(f"{x} = {_number_text(c - b, False)} / {_number_text(a, False)} = {_number_text(value, False)}")
    return _boxed(steps, _number_text(value, False))


def _numbers(metadata: Mapping[str, Any]) -> list[int]:
    numbers = metadata.get("numbers")
    if not isinstance(numbers, list | tuple) or len(numbers) < 2 or not all(type(n) is int and n > 0 for n in numbers):
        raise _Unsolvable("no positive integers")
    return list(numbers)


def _euclid(a: int, b: int, steps: list[str]) -> int:
    """gcd by Euclid's algorithm, one ``a = q * b + r`` step per division."""
    a, b = max(a, b), min(a, b)
    while b:
        steps.append(f"{a} = {a // b} * {b} + {a % b}")
        a, b = b, a % b
    return a


def solve_gcd(metadata: Mapping[str, Any]) -> str:
    """gcd: Euclid's algorithm on the first two numbers, then on the result and each next number."""
    numbers, steps = _numbers(metadata), []
    result = numbers[0]
    for number in numbers[1:]:
        result = _euclid(result, number, steps)
    return _boxed(steps, str(result))


def solve_lcm(metadata: Mapping[str, Any]) -> str:
    """lcm: ``lcm(a, b) = a * b / gcd(a, b)``, folded over the numbers."""
    numbers, steps = _numbers(metadata), []
    result = numbers[0]
    for number in numbers[1:]:
        divisor = gcd(result, number)
        steps.append(f"gcd({result}, {number}) = {divisor}, lcm({result}, {number}) = {result} * {number} / "
                     f"{divisor} = {result * number // divisor}")
        result = result * number // divisor
    return _boxed(steps, str(result))


def solve_fraction(metadata: Mapping[str, Any]) -> str:
    """fraction_simplification: divide numerator and denominator by their gcd."""
    numerator, denominator = metadata.get("numerator"), metadata.get("denominator")
    if type(numerator) is not int or type(denominator) is not int or numerator <= 0 or denominator <= 0:
        raise _Unsolvable("no fraction")
    divisor = gcd(numerator, denominator)
    steps = [f"gcd({numerator}, {denominator}) = {divisor}",
             f"{numerator} / {divisor} = {numerator // divisor}", f"{denominator} / {divisor} = {denominator // divisor}"]
    return _boxed(steps, f"{numerator // divisor}/{denominator // divisor}")


def solve_legs(metadata: Mapping[str, Any]) -> str:
    """leg_counting: legs of each kind of animal (reasoning-gym's own table), then the sum."""
    from reasoning_gym.arithmetic.leg_counting import ANIMALS

    animals = metadata.get("animals")
    if not isinstance(animals, Mapping) or not animals or any(name not in ANIMALS for name in animals):
        raise _Unsolvable("unknown animals")
    steps, totals = [], []
    for name, count in animals.items():
        totals.append(count * ANIMALS[name])
        steps.append(f"{count} {name}: {count} * {ANIMALS[name]} = {totals[-1]}")
    if len(totals) > 1:
        steps.append(f"{' + '.join(map(str, totals))} = {sum(totals)}")
    return _boxed(steps, str(sum(totals)))


def solve_count_bits(metadata: Mapping[str, Any]) -> str:
    """count_bits: write the number in binary and count its ones."""
    number = metadata.get("number")
    if type(number) is not int or number < 0:
        raise _Unsolvable("no number")
    binary = format(number, "b")
    return _boxed([f"{number} in binary is {binary}", f"it has {binary.count('1')} ones"], str(binary.count("1")))


SOLVERS: dict[str, Callable[[Mapping[str, Any]], str]] = {
    "basic_arithmetic": solve_expression,
    "chain_sum": solve_expression,
    "count_bits": solve_count_bits,
    "decimal_chain_sum": solve_expression,
    "fraction_simplification": solve_fraction,
    "gcd": solve_gcd,
    "lcm": solve_lcm,
    "leg_counting": solve_legs,
    "products": solve_expression,
    "simple_equations": solve_linear_equation,
}
"""The families with a worked solution; any other family's expert answers with the bare reference."""


def worked_solution(family: str, metadata: Mapping[str, Any], reference: str) -> str | None:
    """Step-by-step reasoning ending in ``\\boxed{answer}``, or None (no solver, or it misses ``reference``)."""
    solver = SOLVERS.get(family)
    if solver is None:
        return None
    try:
        text = solver(metadata)
    except (_Unsolvable, ArithmeticError, RecursionError):
        return None
    answer = last_boxed(text)
    return text if answer is not None and grade(answer, reference) else None
