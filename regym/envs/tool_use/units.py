"""A unit-conversion tool over exact SI factors (NIST SP 811, Appendix B)."""

from __future__ import annotations

from regym.envs.tool_use.schema import Tool, ToolError

RESULT_DECIMALS = 6

# unit -> (quantity, factor to the quantity's base unit)
LINEAR_UNITS: dict[str, tuple[str, float]] = {
    "mm": ("length", 0.001),
    "cm": ("length", 0.01),
    "m": ("length", 1.0),
    "km": ("length", 1000.0),
    "in": ("length", 0.0254),
    "ft": ("length", 0.3048),
    "yd": ("length", 0.9144),
    "mi": ("length", 1609.344),
    "mg": ("mass", 1e-6),
    "g": ("mass", 0.001),
    "kg": ("mass", 1.0),
    "t": ("mass", 1000.0),
    "oz": ("mass", 0.028349523125),
    "lb": ("mass", 0.45359237),
    "ml": ("volume", 0.001),
    "l": ("volume", 1.0),
    "gal": ("volume", 3.785411784),
    "qt": ("volume", 0.946352946),
    "s": ("time", 1.0),
    "min": ("time", 60.0),
    "h": ("time", 3600.0),
    "day": ("time", 86400.0),
    "m/s": ("speed", 1.0),
    "km/h": ("speed", 1000.0 / 3600.0),
    "mph": ("speed", 1609.344 / 3600.0),
}
TEMPERATURE_UNITS = ("C", "F", "K")
UNITS = (*LINEAR_UNITS, *TEMPERATURE_UNITS)


def _to_kelvin(value: float, unit: str) -> float:
    return {"C": value + 273.15, "F": (value - 32.0) * 5.0 / 9.0 + 273.15, "K": value}[unit]


def _from_kelvin(value: float, unit: str) -> float:
    return {"C": value - 273.15, "F": (value - 273.15) * 9.0 / 5.0 + 32.0, "K": value}[unit]


def quantity_of(unit: str) -> str:
    return "temperature" if unit in TEMPERATURE_UNITS else LINEAR_UNITS[unit][0]


def convert(value: float, from_unit: str, to_unit: str) -> float:
    """``value`` in ``from_unit`` expressed in ``to_unit``, rounded to ``RESULT_DECIMALS`` decimals."""
    source, target = quantity_of(from_unit), quantity_of(to_unit)
    if source != target:
        raise ToolError(f"cannot convert {from_unit} ({source}) to {to_unit} ({target}): different quantities")
    if source == "temperature":
        result = _from_kelvin(_to_kelvin(value, from_unit), to_unit)
    else:
        result = value * LINEAR_UNITS[from_unit][1] / LINEAR_UNITS[to_unit][1]
    return round(result, RESULT_DECIMALS) + 0.0


def unit_tools() -> list[Tool]:
    return [
        Tool(
            name="convert_units",
            description=(
                "Convert a value between units of the same quantity (length, mass, volume, time, speed, "
                f"temperature). Returns {{\"value\": number, \"unit\": string}} rounded to {RESULT_DECIMALS} decimals."
            ),
            parameters={
                "type": "object",
                "properties": {
                    "value": {"type": "number", "description": "The amount to convert.",
                              "minimum": -1e12, "maximum": 1e12},
                    "from_unit": {"type": "string", "enum": list(UNITS)},
                    "to_unit": {"type": "string", "enum": list(UNITS)},
                },
                "required": ["value", "from_unit", "to_unit"],
                "additionalProperties": False,
            },
            function=lambda value, from_unit, to_unit: {
                "value": convert(value, from_unit, to_unit),
                "unit": to_unit,
            },
        )
    ]
