"""Column constructors for describing tables compactly: one typed function per Dataverse column type,
lookups as `LookupSpec` (resolved into relationships by `TableBuilder`), state/status option sets."""

from __future__ import annotations

from dataclasses import dataclass

from d365_components.emulator.storage.schema import Column, Option, OptionSet

INT_MIN, INT_MAX = -2147483648, 2147483647
StateOptionSets = tuple[OptionSet, OptionSet]


def string_column(name: str, max_length: int = 100, display: str = "", required: str = "None") -> Column:
    return Column(name, "String", display=display, max_length=max_length, required=required)


def memo_column(name: str, max_length: int = 2000, display: str = "") -> Column:
    return Column(name, "Memo", display=display, max_length=max_length)


def integer_column(name: str, display: str = "", lo: int = INT_MIN, hi: int = INT_MAX) -> Column:
    return Column(name, "Integer", display=display, min_value=lo, max_value=hi)


def money_column(name: str, display: str = "") -> Column:
    return Column(name, "Money", display=display, precision=2, min_value=-922337203685477, max_value=922337203685477)


def decimal_column(name: str, display: str = "", precision: int = 2) -> Column:
    return Column(name, "Decimal", display=display, precision=precision, min_value=-100000000000, max_value=100000000000)


def boolean_column(name: str, display: str = "", true: str = "Yes", false: str = "No") -> Column:
    opts = OptionSet(name, [Option(0, false), Option(1, true)], kind="Boolean")
    return Column(name, "Boolean", display=display, option_set=opts)


def choice_column(name: str, options: dict[int, str] | OptionSet, display: str = "") -> Column:
    """A Picklist (single choice) column with its own option set, or a global one."""
    opts = options if isinstance(options, OptionSet) else OptionSet(
        name, [Option(v, lbl) for v, lbl in options.items()])
    return Column(name, "Picklist", display=display, option_set=opts)


def choices_column(name: str, options: dict[int, str], display: str = "") -> Column:
    """A MultiSelectPicklist (several choices) column."""
    opts = OptionSet(name, [Option(v, lbl) for v, lbl in options.items()], kind="MultiSelectPicklist")
    return Column(name, "MultiSelectPicklist", display=display, option_set=opts, is_custom=name.startswith("new_"))


def datetime_column(name: str, display: str = "", date_only: bool = False) -> Column:
    return Column(name, "DateTime", display=display, format="DateOnly" if date_only else "DateAndTime")


def guid_column(name: str, display: str = "") -> Column:
    return Column(name, "Uniqueidentifier", display=display)


def entity_name_column(name: str, display: str = "") -> Column:
    return Column(name, "EntityName", display=display)


@dataclass(init=False)
class LookupSpec:
    """A lookup column to be: {target table: (relationship schema name, navigation property)}."""

    name: str
    targets: dict[str, tuple[str, str]]
    display: str
    kind: str

    def __init__(self, name: str, targets: dict[str, tuple[str, str]] | str, display: str = "",
                 kind: str | None = None, rel: str | None = None) -> None:
        if isinstance(targets, str):
            targets = {targets: (rel or f"{name}_{targets}", name)}
        self.name, self.targets, self.display = name, targets, display
        self.kind = kind or ("Customer" if set(targets) == {"account", "contact"} else "Lookup")


def state_option_sets(states: dict[int, str], statuses: dict[int, tuple[str, int]]) -> StateOptionSets:
    """The statecode and statuscode option sets; each status names the state it belongs to."""
    return (OptionSet("statecode", [Option(v, lbl) for v, lbl in states.items()], kind="State"),
            OptionSet("statuscode", [Option(v, lbl, state=s) for v, (lbl, s) in statuses.items()], kind="Status"))


def active_states() -> StateOptionSets:
    """Active/Inactive, the states of most tables."""
    return state_option_sets({0: "Active", 1: "Inactive"}, {1: ("Active", 0), 2: ("Inactive", 1)})


ColumnSpec = Column | LookupSpec
