"""Task templates of the tool-use env and the seeded worlds they run in.

A task id is ``"<template>-<index>"``. Everything about the task (the world's
records, tables and documents, the question, the answer) comes from a numpy
Generator seeded by a hash of that id, so the same id is the same task everywhere.

Each template writes a question about one entity of the world and a ``solve``
function that answers it *by calling the tools*. Running ``solve`` through the
episode's toolbox gives the reference answer and the expert's plan (the exact calls
and the results they return) from one piece of code, so they cannot disagree.

Levels and splits (``tool_use/levels.py``, docs/tool_use.md): single-call and two-call chain templates
are the easy levels; in-distribution templates use the tool combinations
{kv, units, calculator}, {sql, calendar}, {search, calculator}, {kv, calendar} and
{sql, calculator}; out-of-distribution templates use combinations no in-distribution
template uses ({search, calendar}, {sql, units}, {kv, sql, calculator},
{calendar, kv, calculator}, {search, kv, units, calculator}), including chains that
start with the calendar and the only 5-call chain.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from regym.envs.tool_use.calendar import WEEKDAYS
from regym.envs.tool_use.search import Document
from regym.envs.tool_use.sql import Table
from regym.envs.tool_use.toolbox import FAMILIES, Toolbox, World

# --- the world -------------------------------------------------------------------------------

_SYLLABLES = ("ka", "lo", "mi", "ra", "ven", "tor", "sel", "dun", "bri", "qua", "zen", "mar", "tel", "os",
              "ith", "al", "gor", "pel", "nu", "vin", "sa", "dro", "fen", "lux", "ober", "cal", "yr", "hal")
_FIRST_NAMES = ("Ada", "Bruno", "Chen", "Dalia", "Emeka", "Farah", "Goran", "Hana", "Ivo", "Jun", "Kira", "Luca",
                "Maya", "Nils", "Omar", "Priya", "Quinn", "Rosa", "Sven", "Tara", "Umar", "Vera", "Wen", "Ximena",
                "Yusuf", "Zoe")
_LAST_NAMES = ("Abara", "Brandt", "Costa", "Duval", "Eriksen", "Fontaine", "Garcia", "Haddad", "Ibsen", "Jovanovic",
               "Kowalski", "Lindqvist", "Moreau", "Nakamura", "Okafor", "Petrov", "Quispe", "Rossi", "Silva",
               "Tanaka", "Uddin", "Varga", "Weber", "Yilmaz", "Zhou")
_DEPARTMENTS = ("Engineering", "Finance", "Logistics", "Marketing", "Support")
_COMPANY_SUFFIXES = ("Traders", "Supply", "Works", "Outfitters", "Partners", "Group", "Foods", "Labs")
_PRODUCTS = ("copper kettle", "oak stool", "wool blanket", "steel wrench", "glass vase", "cedar crate",
             "linen apron", "brass lamp", "clay planter", "canvas tote", "iron skillet", "bamboo tray")
_EQUIPMENT = ("excavator", "scissor lift", "concrete mixer", "generator", "forklift", "pressure washer",
              "tile saw", "compactor")
_REGIONS = ("the northern highlands", "the river delta", "the eastern coast", "the central plains",
            "the lake district", "the southern valley")


def _word(rng: np.random.Generator, used: set[str], syllables: int = 3) -> str:
    while True:
        word = "".join(_SYLLABLES[i] for i in rng.integers(len(_SYLLABLES), size=syllables)).capitalize()
        if word not in used:
            used.add(word)
            return word


def _date(rng: np.random.Generator, start: str, end: str) -> str:
    first, last = dt.date.fromisoformat(start), dt.date.fromisoformat(end)
    return (first + dt.timedelta(days=int(rng.integers((last - first).days + 1)))).isoformat()


@dataclass
class Entities:
    """Handles into the world that templates ask about."""

    employees: list[tuple] = field(default_factory=list)
    orders: list[tuple] = field(default_factory=list)
    customers: list[str] = field(default_factory=list)
    products: list[str] = field(default_factory=list)
    skus: list[str] = field(default_factory=list)
    projects: list[str] = field(default_factory=list)
    badges: dict[str, str] = field(default_factory=dict)
    rentals: list[str] = field(default_factory=list)
    towers: list[tuple[Document, float, int]] = field(default_factory=list)  # (doc, height m, year completed)
    bridges: list[tuple[Document, str, int]] = field(default_factory=list)  # (doc, name, length ft)
    festivals: list[tuple[Document, str, int]] = field(default_factory=list)  # (doc, first date, closes after)


def make_world(rng: np.random.Generator) -> tuple[World, Entities]:
    """A fresh world: ~20 employees, ~40 orders, ~50 records, 24 documents."""
    world, found, used = World(), Entities(), set()

    names = set()
    while len(names) < 20:
        names.add(f"{_FIRST_NAMES[rng.integers(len(_FIRST_NAMES))]} {_LAST_NAMES[rng.integers(len(_LAST_NAMES))]}")
    ordered = sorted(names)
    for i, name in enumerate(ordered[j] for j in rng.permutation(len(ordered))):
        found.employees.append((i + 1, name, _DEPARTMENTS[rng.integers(len(_DEPARTMENTS))],
                                int(rng.integers(80, 320)) * 500, _date(rng, "2010-01-01", "2023-12-31")))
    found.customers = [f"{_word(rng, used, 2)} {_COMPANY_SUFFIXES[rng.integers(len(_COMPANY_SUFFIXES))]}"
                       for _ in range(8)]
    product_order = rng.permutation(len(_PRODUCTS))[:10]
    found.products = [_PRODUCTS[i] for i in product_order]
    unit_weights = {p: round(float(rng.uniform(0.4, 30.0)), 2) for p in found.products}
    for i in range(40):
        product = found.products[rng.integers(len(found.products))]
        found.orders.append((i + 1, found.customers[i % 8 if i < 8 else rng.integers(8)], product,
                             int(rng.integers(1, 25)), round(float(rng.uniform(3, 250)), 2), unit_weights[product],
                             _date(rng, "2022-01-01", "2024-12-31")))
    world.tables = [
        Table("employees", (("id", "INTEGER"), ("name", "TEXT"), ("department", "TEXT"), ("salary", "INTEGER"),
                            ("hire_date", "TEXT")), tuple(found.employees)),
        Table("orders", (("id", "INTEGER"), ("customer", "TEXT"), ("product", "TEXT"), ("quantity", "INTEGER"),
                         ("unit_price", "REAL"), ("weight_lb", "REAL"), ("order_date", "TEXT")),
              tuple(found.orders)),
    ]

    skus = set()
    while len(skus) < 8:
        skus.add(f"SKU-{int(rng.integers(1000, 10000))}")
    found.skus = sorted(skus)
    for sku in found.skus:
        world.kv[f"product/{sku}/weight_lb"] = round(float(rng.uniform(0.2, 60.0)), 2)
        world.kv[f"product/{sku}/price_usd"] = round(float(rng.uniform(1.0, 400.0)), 2)
        world.kv[f"product/{sku}/stock"] = int(rng.integers(0, 500))
    for _ in range(6):
        code = f"PRJ-{_word(rng, used, 1).upper()}{int(rng.integers(10, 100))}"
        found.projects.append(code)
        world.kv[f"project/{code}/start_date"] = _date(rng, "2023-01-01", "2026-12-31")
        world.kv[f"project/{code}/duration_days"] = int(rng.integers(10, 400))
        world.kv[f"project/{code}/lead"] = found.employees[rng.integers(len(found.employees))][1]
    for employee in found.employees[:10]:
        badge = f"B-{int(rng.integers(10000, 100000))}"
        found.badges[badge] = employee[1]
        world.kv[f"badge/{badge}/employee"] = employee[1]
    for equipment in rng.permutation(len(_EQUIPMENT))[:6]:
        slug = _EQUIPMENT[equipment].replace(" ", "-")
        found.rentals.append(slug)
        world.kv[f"rental/{slug}/daily_rate_usd"] = round(float(rng.uniform(20, 900)), 2)
        world.kv[f"rental/{slug}/deposit_usd"] = int(rng.integers(1, 20)) * 50

    doc_number = iter(range(1, 100))
    for _ in range(8):
        name, region = f"{_word(rng, used)} Tower", _REGIONS[rng.integers(len(_REGIONS))]
        height, year = round(float(rng.uniform(40, 600)), 1), int(rng.integers(1890, 2020))
        text = (f"The {name} is a landmark observation tower near a market town in {region}, visited by many "
                f"travellers every summer. Built of steel and local stone, it was completed in {year}. "
                f"The {name} stands {height} meters tall, including its antenna.")
        found.towers.append((Document(f"doc-{next(doc_number):02d}", name, text), height, year))
    for _ in range(8):
        word, region = _word(rng, used), _REGIONS[rng.integers(len(_REGIONS))]
        name, length, lanes = f"{word} Bridge", int(rng.integers(300, 9000)), int(rng.integers(2, 9))
        text = (f"The {name} is a road bridge that carries traffic across a wide river in {region}, "
                f"linking two old ferry towns. It opened in {int(rng.integers(1900, 2020))}. "
                f"The {name} is {length} feet long from abutment to abutment.")
        slug = word.lower()
        world.kv[f"bridge/{slug}/lanes"] = lanes
        found.bridges.append((Document(f"doc-{next(doc_number):02d}", name, text), slug, length))
    for _ in range(8):
        name, region = f"{_word(rng, used)} Lantern Festival", _REGIONS[rng.integers(len(_REGIONS))]
        first, closes = _date(rng, "1950-01-01", "2015-12-31"), int(rng.integers(2, 15))
        text = (f"The {name} is a yearly celebration of light, music and food held in a harbour town in "
                f"{region}. Its first edition opened on {first}. Each edition closes {closes} days after its "
                f"opening day.")
        found.festivals.append((Document(f"doc-{next(doc_number):02d}", name, text), first, closes))
    documents = [item[0] for group in (found.towers, found.bridges, found.festivals) for item in group]
    world.documents = [documents[i] for i in rng.permutation(len(documents))]
    return world, found


# --- tasks ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    """The reference answer and how it is graded."""

    text: str
    kind: str  # "number", "date", "weekday"
    decimals: int = 0

    @property
    def format_hint(self) -> str:
        if self.kind == "number":
            return "a number" + (f" rounded to {self.decimals} decimal places" if self.decimals else " (integer)")
        if self.kind == "date":
            return "a date YYYY-MM-DD"
        return "a weekday name (Monday ... Sunday)"


def number(value: float | int, decimals: int) -> Answer:
    return Answer(f"{value:.{decimals}f}", "number", decimals)


_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?|-?\.\d+")
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def grade(answer: Answer, given: str) -> bool:
    """Exact grading: the first number within one unit of the last requested decimal, the ISO date, the weekday."""
    given = given.strip()
    if answer.kind == "number":
        match = _NUMBER.search(given)
        if match is None:
            return False
        try:
            value = float(match.group().replace(",", ""))
        except ValueError:
            return False
        tolerance = 10.0 ** (-answer.decimals) * 1.0001 if answer.decimals else 1e-9
        return math.isfinite(value) and abs(value - float(answer.text)) <= tolerance
    if answer.kind == "date":
        match = _ISO_DATE.search(given)
        return match is not None and match.group() == answer.text
    mentioned = {day for day in WEEKDAYS if re.search(rf"\b{day}\b", given, re.IGNORECASE)}
    return mentioned == {answer.text}


Caller = Callable[..., Any]


@dataclass(frozen=True)
class Template:
    name: str
    families: tuple[str, ...]  # the tool families the task needs, in the order the chain uses them
    write: Callable[[np.random.Generator, Entities], tuple[str, Callable[[Caller], Answer]]]
    distractor_families: int | None = None
    """Tool families offered besides the needed ones whatever the env's option (None: the env's)."""


def _pick(rng: np.random.Generator, items):
    return items[int(rng.integers(len(items)))]


def _kv_units_calc(rng, found):
    sku, units = _pick(rng, found.skus), int(rng.integers(2, 49))
    question = (f"A pallet holds {units} units of product {sku}. Look up the product's unit weight in pounds in the "
                "records API, convert it to kilograms, and compute the pallet's total weight in kilograms.")

    def solve(call):
        pounds = call("kv_get", key=f"product/{sku}/weight_lb")["value"]
        kilograms = call("convert_units", value=pounds, from_unit="lb", to_unit="kg")["value"]
        return number(call("calculate", expression=f"{kilograms} * {units}")["result"], 2)

    return question, solve


def _sql_calendar(rng, found):
    customer, variant = _pick(rng, found.customers), int(rng.integers(3))
    if variant == 2:
        question = (f"How many days passed between the first and the last order of customer '{customer}' "
                    "(order_date in the orders table)?")

        def solve(call):
            (first, last), = call("sql_query", query="SELECT MIN(order_date), MAX(order_date) FROM orders "
                                  f"WHERE customer = '{customer}'")["rows"]
            return number(call("date_diff", start_date=first, end_date=last)["days"], 0)

        return question, solve
    days = int(rng.integers(7, 121))
    asked = "On what date does it ship?" if variant == 0 else "On which day of the week does it ship?"
    question = (f"Customer '{customer}' gets a loyalty gift that ships {days} days after their first order "
                f"(the earliest order_date in the orders table). {asked}")

    def solve(call):
        (first,), = call("sql_query", query=f"SELECT MIN(order_date) FROM orders WHERE customer = '{customer}'")["rows"]
        ships = call("date_add", date=first, days=days)["date"]
        if variant == 0:
            return Answer(ships, "date")
        return Answer(call("weekday", date=ships)["weekday"], "weekday")

    return question, solve


def _search_calc(rng, found):
    document, height, year = _pick(rng, found.towers)
    if rng.random() < 0.5:
        scale = int(rng.integers(50, 501))
        question = (f"According to the document collection, how tall is the {document.title}? A scale model is "
                    f"built at 1:{scale}. How tall is the model, in centimeters?")

        def solve(call):
            call("search_documents", query=f"{document.title} height")
            call("read_document", doc_id=document.doc_id)
            return number(call("calculate", expression=f"{height} * 100 / {scale}")["result"], 2)

        return question, solve
    question = f"According to the document collection, how many years before 2025 was the {document.title} completed?"

    def solve(call):
        call("search_documents", query=f"{document.title} completed")
        call("read_document", doc_id=document.doc_id)
        return number(call("calculate", expression=f"2025 - {year}")["result"], 0)

    return question, solve


def _kv_calendar(rng, found):
    project, weekday = _pick(rng, found.projects), bool(rng.random() < 0.4)
    asked = "On which day of the week does it end?" if weekday else "On what date does it end?"
    question = (f"Project {project} starts on its start_date and ends duration_days days later (both fields are in "
                f"the records API). {asked}")

    def solve(call):
        start = call("kv_get", key=f"project/{project}/start_date")["value"]
        duration = call("kv_get", key=f"project/{project}/duration_days")["value"]
        end = call("date_add", date=start, days=duration)["date"]
        return Answer(call("weekday", date=end)["weekday"], "weekday") if weekday else Answer(end, "date")

    return question, solve


def _sql_calc(rng, found):
    percent = int(rng.integers(2, 26))
    if rng.random() < 0.5:
        product = _pick(rng, sorted({order[2] for order in found.orders}))
        question = (f"What is the total revenue (quantity times unit_price, over all orders) of the product "
                    f"'{product}', after adding a {percent}% sales tax?")

        def solve(call):
            (revenue,), = call("sql_query", query="SELECT SUM(quantity * unit_price) FROM orders "
                               f"WHERE product = '{product}'")["rows"]
            return number(call("calculate", expression=f"{revenue} * (1 + {percent} / 100)")["result"], 2)

        return question, solve
    department = _pick(rng, sorted({employee[2] for employee in found.employees}))
    question = (f"The {department} department gives everyone a {percent}% raise. What is the department's new "
                "average monthly salary (average annual salary after the raise, divided by 12)?")

    def solve(call):
        (average,), = call("sql_query", query=f"SELECT AVG(salary) FROM employees WHERE department = '{department}'")[
            "rows"]
        return number(call("calculate", expression=f"{average} * (1 + {percent} / 100) / 12")["result"], 2)

    return question, solve


def _search_calendar(rng, found):
    document, first, closes = _pick(rng, found.festivals)
    if rng.random() < 0.5:
        question = (f"According to the document collection, on what date did the first edition of the "
                    f"{document.title} close?")

        def solve(call):
            call("search_documents", query=f"{document.title} first edition")
            call("read_document", doc_id=document.doc_id)
            return Answer(call("date_add", date=first, days=closes)["date"], "date")

        return question, solve
    question = (f"According to the document collection, on which day of the week did the first edition of the "
                f"{document.title} open?")

    def solve(call):
        call("search_documents", query=f"{document.title} first edition")
        call("read_document", doc_id=document.doc_id)
        return Answer(call("weekday", date=first)["weekday"], "weekday")

    return question, solve


def _sql_units(rng, found):
    customer = _pick(rng, found.customers)
    question = (f"What is the total shipping weight in kilograms of all orders of customer '{customer}'? In the "
                "orders table, weight_lb is the weight of one unit in pounds.")

    def solve(call):
        (pounds,), = call("sql_query", query="SELECT SUM(quantity * weight_lb) FROM orders "
                          f"WHERE customer = '{customer}'")["rows"]
        return number(call("convert_units", value=pounds, from_unit="lb", to_unit="kg")["value"], 2)

    return question, solve


def _kv_sql_calc(rng, found):
    badge, percent = _pick(rng, sorted(found.badges)), int(rng.integers(2, 16))
    question = (f"The employee with badge {badge} (see the records API) gets a {percent}% raise. What is their new "
                "monthly salary (annual salary from the employees table after the raise, divided by 12)?")

    def solve(call):
        name = call("kv_get", key=f"badge/{badge}/employee")["value"]
        (salary,), = call("sql_query", query=f"SELECT salary FROM employees WHERE name = '{name}'")["rows"]
        return number(call("calculate", expression=f"{salary} * (1 + {percent} / 100) / 12")["result"], 2)

    return question, solve


def _calendar_kv_calc(rng, found):
    equipment = _pick(rng, found.rentals)
    start = _date(rng, "2024-01-01", "2025-06-30")
    end = (dt.date.fromisoformat(start) + dt.timedelta(days=int(rng.integers(2, 90)))).isoformat()
    question = (f"A {equipment.replace('-', ' ')} was rented from {start} to {end} and is billed for each day "
                "between those dates (the end date minus the start date, in days) at its daily rate from the "
                "records API. What is the rental cost in USD?")

    def solve(call):
        days = call("date_diff", start_date=start, end_date=end)["days"]
        rate = call("kv_get", key=f"rental/{equipment}/daily_rate_usd")["value"]
        return number(call("calculate", expression=f"{days} * {rate}")["result"], 2)

    return question, solve


def _search_kv_units_calc(rng, found):
    document, slug, length = _pick(rng, found.bridges)
    question = (f"According to the document collection, how long is the {document.title}? Its number of lanes is "
                f"in the records API. What is its total lane length in kilometers (length in km times lanes)?")

    def solve(call):
        call("search_documents", query=f"{document.title} length")
        call("read_document", doc_id=document.doc_id)
        kilometers = call("convert_units", value=length, from_unit="ft", to_unit="km")["value"]
        lanes = call("kv_get", key=f"bridge/{slug}/lanes")["value"]
        return number(call("calculate", expression=f"{kilometers} * {lanes}")["result"], 3)

    return question, solve


def _kv_price(rng, found):
    sku = _pick(rng, found.skus)
    question = f"What is the price in USD of product {sku}? It is under the key product/{sku}/price_usd in the records API."

    def solve(call):
        return number(call("kv_get", key=f"product/{sku}/price_usd")["value"], 2)

    return question, solve


def _unit_conversion(rng, found):
    pounds = round(float(rng.uniform(0.5, 200.0)), 1)
    question = f"How many kilograms are {pounds} pounds?"

    def solve(call):
        return number(call("convert_units", value=pounds, from_unit="lb", to_unit="kg")["value"], 2)

    return question, solve


def _weekday_of_date(rng, found):
    date = _date(rng, "1990-01-01", "2030-12-31")
    question = f"On which day of the week is {date}?"

    def solve(call):
        return Answer(call("weekday", date=date)["weekday"], "weekday")

    return question, solve


def _kv_units(rng, found):
    sku = _pick(rng, found.skus)
    question = (f"Look up the unit weight in pounds of product {sku} in the records API (key product/{sku}/weight_lb) "
                "and convert it to kilograms. How many kilograms does one unit weigh?")

    def solve(call):
        pounds = call("kv_get", key=f"product/{sku}/weight_lb")["value"]
        return number(call("convert_units", value=pounds, from_unit="lb", to_unit="kg")["value"], 2)

    return question, solve


def _date_add_weekday(rng, found):
    date, days = _date(rng, "2000-01-01", "2029-12-31"), int(rng.integers(3, 400))
    question = f"On which day of the week is the date {days} days after {date}?"

    def solve(call):
        later = call("date_add", date=date, days=days)["date"]
        return Answer(call("weekday", date=later)["weekday"], "weekday")

    return question, solve


def _sql_salary_calc(rng, found):
    employee, percent = _pick(rng, found.employees), int(rng.integers(2, 21))
    question = (f"Look up the salary of employee '{employee[1]}' in the employees table. "
                f"How much is {percent}% of that salary?")

    def solve(call):
        (salary,), = call("sql_query", query=f"SELECT salary FROM employees WHERE name = '{employee[1]}'")["rows"]
        return number(call("calculate", expression=f"{salary} * {percent} / 100")["result"], 2)

    return question, solve


SINGLE_CALL_TEMPLATES = {
    template.name: template
    for template in (
        Template("kv_price", ("kv",), _kv_price),
        Template("unit_conversion", ("units",), _unit_conversion),
        Template("weekday_of_date", ("calendar",), _weekday_of_date),
    )
}
CHAINED_CALL_TEMPLATES = {
    template.name: template
    for template in (
        Template("kv_units", ("kv", "units"), _kv_units),
        Template("date_add_weekday", ("calendar",), _date_add_weekday),
        Template("sql_salary_calc", ("sql", "calculator"), _sql_salary_calc),
    )
}


ID_TEMPLATES = {
    template.name: template
    for template in (
        Template("kv_units_calc", ("kv", "units", "calculator"), _kv_units_calc),
        Template("sql_calendar", ("sql", "calendar"), _sql_calendar),
        Template("search_calc", ("search", "calculator"), _search_calc),
        Template("kv_calendar", ("kv", "calendar"), _kv_calendar),
        Template("sql_calc", ("sql", "calculator"), _sql_calc),
    )
}
OOD_TEMPLATES = {
    template.name: template
    for template in (
        Template("search_calendar", ("search", "calendar"), _search_calendar),
        Template("sql_units", ("sql", "units"), _sql_units),
        Template("kv_sql_calc", ("kv", "sql", "calculator"), _kv_sql_calc),
        Template("calendar_kv_calc", ("calendar", "kv", "calculator"), _calendar_kv_calc),
        Template("search_kv_units_calc", ("search", "kv", "units", "calculator"), _search_kv_units_calc),
    )
}
ALL_TOOLS_TEMPLATES = {
    f"{template.name}_all_tools": Template(f"{template.name}_all_tools", template.families, template.write,
                                           distractor_families=len(FAMILIES))
    for template in ID_TEMPLATES.values()
}
"""The in-distribution questions with every tool family offered (near-OOD): more tools to choose from, and
their own task ids, so their worlds are not the in-distribution ones."""
TEMPLATES = {"in_distribution": ID_TEMPLATES, "near_out_of_distribution": ALL_TOOLS_TEMPLATES,
             "out_of_distribution": OOD_TEMPLATES}
KNOWN_TEMPLATES = {**SINGLE_CALL_TEMPLATES, **CHAINED_CALL_TEMPLATES, **ID_TEMPLATES, **ALL_TOOLS_TEMPLATES,
                   **OOD_TEMPLATES}


@dataclass
class Step:
    """One call of the reference solution and the result it returned."""

    name: str
    arguments: dict[str, Any]
    result: Any

    def satisfied_by(self, name: str, result: Any) -> bool:
        """Whether a successful call by the policy obtained what this step obtains."""
        if name != self.name:
            return False
        if name == "search_documents":
            wanted = {hit["doc_id"] for hit in self.result["results"][:1]}
            return wanted <= {hit.get("doc_id") for hit in result.get("results", [])}
        if name == "sql_query":
            return same_value(result.get("rows"), self.result["rows"])
        return same_value(result, self.result)


def same_value(a: Any, b: Any) -> bool:
    """Equality of JSON values with a relative tolerance on numbers."""
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_value(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same_value(x, y) for x, y in zip(a, b, strict=True))
    return a == b


@dataclass
class Task:
    task_id: str
    template: Template
    question: str
    world: World
    offered: tuple[str, ...]
    solve: Callable[[Caller], Answer]

    def open(self) -> tuple[Toolbox, list[Step], Answer]:
        """Build the episode's toolbox and run the reference solution through it."""
        toolbox = Toolbox(self.world, self.offered)
        steps: list[Step] = []

        def call(name: str, **arguments: Any) -> Any:
            outcome = toolbox.call(name, arguments)
            if not outcome.ok:
                toolbox.close()
                raise RuntimeError(f"task {self.task_id}: reference call {name}({arguments}) failed: "
                                   f"{outcome.error}")
            steps.append(Step(name, arguments, outcome.result))
            return outcome.result

        answer = self.solve(call)
        return toolbox, steps, answer


def task_rng(task_id: str, purpose: str = "task") -> np.random.Generator:
    digest = hashlib.sha256(f"{purpose}:{task_id}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def template_of(task_id: str) -> Template:
    name, _, index = task_id.rpartition("-")
    template = KNOWN_TEMPLATES.get(name)
    if template is None or not index.isdigit():
        known = ", ".join(KNOWN_TEMPLATES)
        raise ValueError(f"bad tool-use task id {task_id!r}: expected '<template>-<number>' with template in {known}")
    return template


def make_task(task_id: str, distractor_families: int = 1) -> Task:
    """The task named ``task_id``; ``distractor_families`` extra tool families are offered besides the needed ones
    (unless the task's template fixes how many)."""
    template = template_of(task_id)
    if template.distractor_families is not None:
        distractor_families = template.distractor_families
    rng = task_rng(task_id)
    world, found = make_world(rng)
    question, solve = template.write(rng, found)
    spare = [family for family in FAMILIES if family not in template.families]
    chosen = task_rng(task_id, "distractors").permutation(len(spare))[: max(0, distractor_families)]
    offered = tuple(family for family in FAMILIES if family in template.families or family in {spare[i] for i in chosen})
    return Task(task_id, template, question, world, offered, solve)
