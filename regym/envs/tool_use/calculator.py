"""A calculator tool: arithmetic expressions evaluated safely (no ``eval``).

The expression is parsed with Python's ``ast`` and only numbers, ``+ - * / // % **``,
parentheses and a few functions are evaluated. Sizes are bounded so that no
expression can exhaust memory or time (``9**9**9`` is refused, not computed).
"""

from __future__ import annotations

import ast
import math
import operator
from typing import Any

from regym.envs.tool_use.schema import Tool, ToolError

MAX_EXPRESSION_CHARS = 300
MAX_MAGNITUDE = 1e15
SIGNIFICANT_DIGITS = 12

_BINARY = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY = {ast.UAdd: operator.pos, ast.USub: operator.neg}
_FUNCTIONS = {
    "abs": (abs, 1, 1),
    "round": (round, 1, 2),
    "min": (min, 1, 10),
    "max": (max, 1, 10),
    "sqrt": (math.sqrt, 1, 1),
    "floor": (math.floor, 1, 1),
    "ceil": (math.ceil, 1, 1),
}


def tidy_number(value: float | int) -> float | int:
    """Integers stay integers; floats keep ``SIGNIFICANT_DIGITS`` digits (drops 0.1+0.2 noise)."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if value == 0:
        return 0.0
    digits = SIGNIFICANT_DIGITS - 1 - int(math.floor(math.log10(abs(value))))
    return round(value, max(digits, 0))


def evaluate(expression: str) -> float | int:
    """The value of an arithmetic expression; ``ToolError`` says what is wrong with it."""
    if len(expression) > MAX_EXPRESSION_CHARS:
        raise ToolError(f"expression too long ({len(expression)} > {MAX_EXPRESSION_CHARS} characters)")
    text = expression.replace("^", "**").replace("×", "*").replace("÷", "/")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        raise ToolError(
            f"cannot parse {expression!r}: use numbers, + - * / // % ** and parentheses, e.g. \"(2.5 + 4) * 3\""
        ) from None
    try:
        value = _evaluate(tree.body)
    except RecursionError:
        raise ToolError("expression is nested too deeply") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise ToolError("the result is not a finite number")
    return tidy_number(value)


def _check(value: Any) -> float | int:
    if isinstance(value, complex):
        raise ToolError("the result is a complex number")
    if isinstance(value, float) and not math.isfinite(value):
        raise ToolError("the result is not a finite number")
    if abs(value) > MAX_MAGNITUDE:
        raise ToolError(f"a value exceeds the calculator's range (|x| > {MAX_MAGNITUDE:g})")
    return value


def _evaluate(node: ast.AST) -> float | int:
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float) and not isinstance(node.value, bool):
        return _check(node.value)
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _evaluate(node.left), _evaluate(node.right)
        if isinstance(node.op, ast.Pow) and (abs(right) > 64 or (abs(left) > 1e6 and abs(right) > 2)):
            raise ToolError("exponent too large for the calculator")
        try:
            return _check(_BINARY[type(node.op)](left, right))
        except ZeroDivisionError:
            raise ToolError("division by zero") from None
        except OverflowError:
            raise ToolError("the result overflows") from None
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _check(_UNARY[type(node.op)](_evaluate(node.operand)))
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and not node.keywords:
        name = node.func.id
        if name not in _FUNCTIONS:
            raise ToolError(f"unknown function {name!r}; available: {', '.join(_FUNCTIONS)}")
        function, least, most = _FUNCTIONS[name]
        if not least <= len(node.args) <= most:
            raise ToolError(f"{name} takes {least}..{most} arguments, got {len(node.args)}")
        arguments = [_evaluate(argument) for argument in node.args]
        if name == "round" and len(arguments) == 2:
            arguments[1] = int(arguments[1])
        try:
            return _check(function(*arguments))
        except (ValueError, OverflowError) as error:
            raise ToolError(f"{name}: {error}") from None
    if isinstance(node, ast.Name):
        raise ToolError(f"unknown name {node.id!r}: the calculator only takes numbers (substitute the value)")
    raise ToolError(f"unsupported syntax {type(node).__name__!r}: use numbers, + - * / // % ** and parentheses")


def calculator_tools() -> list[Tool]:
    return [
        Tool(
            name="calculate",
            description=(
                "Evaluate an arithmetic expression exactly as written. Supports + - * / // % ** and "
                "parentheses, and abs, round, min, max, sqrt, floor, ceil. Returns {\"result\": number}."
            ),
            parameters={
                "type": "object",
                "properties": {
                    "expression": {
                        "type": "string",
                        "description": "The expression, e.g. \"(12.5 * 4) / 3\".",
                        "minLength": 1,
                        "maxLength": MAX_EXPRESSION_CHARS,
                    }
                },
                "required": ["expression"],
                "additionalProperties": False,
            },
            function=lambda expression: {"result": evaluate(expression)},
        )
    ]
