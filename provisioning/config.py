"""The mappings file: the admin's YAML, validated strictly, turned into the planner's ``Policy``.

Every problem becomes one line that names the file, the line, the mapping and the field, e.g.
``mappings.yaml:14: mappings[2] "US offices": match.values: must list at least one value``.
Unknown keys are refused (a typo must not silently change who gets backed up), and so are YAML
duplicate keys, which a YAML parser would otherwise resolve by keeping the last one.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Sequence
from collections.abc import Mapping as MappingABC
from pathlib import Path
from typing import Annotated, Any, TypeVar

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    StrictBool,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)

from provisioning.config_reading import SHOWN, UnsafeYaml, decode, read_bytes, read_yaml, short
from provisioning.domain.accounts import AccountKind, UserIdAttribute
from provisioning.domain.groups import EntraGroup
from provisioning.domain.mappings import (
    AllMatch,
    AttributeMatch,
    GroupMatch,
    GroupRef,
    Lifecycle,
    Mapping,
    Match,
    Policy,
    Remap,
    Retire,
    Target,
)
from provisioning.domain.quota import Quota, QuotaError
from provisioning.errors import NeedsHuman

# Graph v1.0 user properties that hold a value an admin can match on (strings, booleans, string
# collections). Navigation properties and complex types are left out: a mapping on them never matches.
USER_PROPERTIES = frozenset(
    {
        "accountEnabled",
        "ageGroup",
        "businessPhones",
        "city",
        "companyName",
        "consentProvidedForMinor",
        "country",
        "creationType",
        "department",
        "displayName",
        "employeeHireDate",
        "employeeId",
        "employeeType",
        "externalUserState",
        "faxNumber",
        "givenName",
        "id",
        "imAddresses",
        "isResourceAccount",
        "jobTitle",
        "legalAgeGroupClassification",
        "mail",
        "mailNickname",
        "mobilePhone",
        "officeLocation",
        "onPremisesDistinguishedName",
        "onPremisesDomainName",
        "onPremisesImmutableId",
        "onPremisesSamAccountName",
        "onPremisesSecurityIdentifier",
        "onPremisesSyncEnabled",
        "onPremisesUserPrincipalName",
        "otherMails",
        "postalCode",
        "preferredDataLocation",
        "preferredLanguage",
        "proxyAddresses",
        "securityIdentifier",
        "showInAddressList",
        "state",
        "streetAddress",
        "surname",
        "usageLocation",
        "userPrincipalName",
        "userType",
    }
)
EXTENSION_ATTRIBUTE = re.compile(r"^onPremisesExtensionAttributes\.extensionAttribute([1-9]|1[0-5])$")
DIRECTORY_EXTENSION = re.compile(r"^extension_[0-9a-fA-F]{32}_[A-Za-z0-9_]+$")


class ConfigError(NeedsHuman):
    """The configuration cannot be used. ``problems`` holds one line per problem."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


MAX_TEXT = 1024  # names and values; a state row (Table Storage: 64 KB per property) must hold them


def _text(value: Any) -> Any:
    if not isinstance(value, str):
        shown = "nothing" if value is None else f"{type(value).__name__} {short(value)}"
        raise ValueError(f'must be text, got {shown} (quote it in YAML, e.g. "{short(value, 20)}")')
    if not value.strip():
        raise ValueError("must not be empty")
    if len(value) > MAX_TEXT:
        raise ValueError(f"is {len(value)} characters long; at most {MAX_TEXT}")
    return value.strip()


Text = Annotated[str, BeforeValidator(_text)]


def _quota(value: Any) -> Quota | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str):
        raise ValueError(f'{short(value)} needs a unit: write e.g. "200 GB", or "unlimited"')
    try:
        return Quota.parse(value)
    except QuotaError as error:
        raise ValueError(str(error)) from None


QuotaField = Annotated[Quota | None, BeforeValidator(_quota)]


def _kinds(value: Any) -> Any:
    if isinstance(value, list):
        known = ", ".join(k.value for k in AccountKind)
        for item in value:
            if item not in {k.value for k in AccountKind}:
                raise ValueError(f"unknown kind {short(item)} (known kinds: {known})")
    return value


Kinds = Annotated[list[AccountKind], BeforeValidator(_kinds), Field(min_length=1)]

MAX_SETTLE_SECONDS = 86_400  # a day: longer is Druva's own daily import, not near real time
DEFAULT_SETTLE_SECONDS = 300  # a hire's properties land in seconds, dynamic groups in minutes
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h)?\s*$", re.IGNORECASE)
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600}


def _duration(value: Any) -> Any:
    """Seconds, from a number of seconds or text such as ``90s``, ``5m``, ``1h`` (``0``: at once)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f'must be a duration such as "5m", "90s" or 0, got {short(value)}')
    if isinstance(value, str):
        found = _DURATION.match(value)
        if found is None:
            raise ValueError(f'must be a duration such as "5m", "90s" or 0, got {short(value)}')
        value = float(found.group(1)) * _UNIT_SECONDS[(found.group(2) or "s").lower()]
    if not 0 <= value <= MAX_SETTLE_SECONDS:
        raise ValueError(f"must be between 0 and 24h, got {short(value)} seconds")
    return float(value)


Duration = Annotated[float, BeforeValidator(_duration)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SourceConfig(_Strict):
    user_id_attribute: UserIdAttribute = UserIdAttribute.USER_PRINCIPAL_NAME


class GroupsMatchConfig(_Strict):
    groups: list[Text] = Field(min_length=1)
    nested: StrictBool = False
    kinds: Kinds = [AccountKind.USER]

    @field_validator("groups")
    @classmethod
    def _distinct(cls, groups: list[str]) -> list[str]:
        repeated = sorted({g for g in groups if groups.count(g) > 1})
        if repeated:
            raise ValueError(f"lists {', '.join(repeated)} more than once")
        return groups


class AttributeMatchConfig(_Strict):
    attribute: Text
    values: list[Text] = Field(min_length=1)
    ignore_case: StrictBool = False
    kinds: Kinds = [AccountKind.USER]

    @field_validator("attribute")
    @classmethod
    def _graph_property(cls, name: str) -> str:
        if name in USER_PROPERTIES or EXTENSION_ATTRIBUTE.match(name) or DIRECTORY_EXTENSION.match(name):
            return name
        candidates = [
            *USER_PROPERTIES,
            *(f"onPremisesExtensionAttributes.extensionAttribute{n}" for n in range(1, 16)),
        ]
        close = difflib.get_close_matches(name, candidates, n=1, cutoff=0.6) or [
            c for c in candidates if c.lower() == name.lower()
        ]
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise ValueError(
            f"{short(name)} is not a Graph user property this product can match on{hint}; "
            "names are case-sensitive, e.g. officeLocation, department, "
            "onPremisesExtensionAttributes.extensionAttribute1"
        )


class AllMatchConfig(_Strict):
    all: StrictBool
    kinds: Kinds = [AccountKind.USER]

    @field_validator("all")
    @classmethod
    def _only_true(cls, value: bool) -> bool:
        if value is not True:
            raise ValueError("must be true (a mapping that matches nobody should be removed)")
        return value


MATCH_KEYS = {"groups": "by_groups", "attribute": "by_attribute", "all": "all_users"}


def _match_tag(value: Any) -> str | None:
    if isinstance(value, MappingABC):
        present = [MATCH_KEYS[k] for k in MATCH_KEYS if k in value]
        return present[0] if len(present) == 1 else None
    return None


MatchConfig = Annotated[
    Annotated[GroupsMatchConfig, Tag("by_groups")]
    | Annotated[AttributeMatchConfig, Tag("by_attribute")]
    | Annotated[AllMatchConfig, Tag("all_users")],
    Discriminator(_match_tag),
]


class TargetConfig(_Strict):
    profile: Text
    storage: Text
    quota: QuotaField = None


class MappingConfig(_Strict):
    name: Text
    match: MatchConfig
    target: TargetConfig
    adopt_existing: StrictBool | None = None

    @field_validator("match", mode="before")
    @classmethod
    def _one_kind_of_match(cls, value: Any) -> Any:
        if not isinstance(value, MappingABC):
            raise ValueError("must be a mapping with one of groups, attribute or all")
        present = [k for k in MATCH_KEYS if k in value]
        if len(present) != 1:
            found = f"found {', '.join(present)}" if present else "found none"
            raise ValueError(f"takes exactly one of groups, attribute or all ({found})")
        return value

    @property
    def kinds(self) -> frozenset[AccountKind]:
        return frozenset(self.match.kinds)


class LifecycleConfig(_Strict):
    disabled: Retire = Retire.PRESERVE
    deleted: Retire = Retire.PRESERVE
    unmapped: Retire = Retire.PRESERVE
    remap: Remap = Remap.UPDATE
    # How long after its creation in Entra a new account waits before it is created in Druva.
    settle: Duration = DEFAULT_SETTLE_SECONDS


class SafetyConfig(_Strict):
    max_preserve_fraction: float = Field(default=0.1, ge=0.0, le=1.0, strict=False)

    @field_validator("max_preserve_fraction", mode="before")
    @classmethod
    def _number(cls, value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"must be a number between 0 and 1, got {short(value)}")
        return value


class ProvisioningConfig(_Strict):
    source: SourceConfig = SourceConfig()
    mappings: list[MappingConfig] = Field(min_length=1)
    lifecycle: LifecycleConfig = LifecycleConfig()
    safety: SafetyConfig = SafetyConfig()
    adopt_existing: StrictBool = True

    @model_validator(mode="after")
    def _unique_names(self) -> ProvisioningConfig:
        seen: dict[str, int] = {}
        for index, mapping in enumerate(self.mappings):
            key = mapping.name.casefold()
            if key in seen:
                raise _DuplicateName(index, seen[key])
            seen[key] = index
        return self

    @property
    def group_refs(self) -> tuple[str, ...]:
        """Every group the mappings name, in first-mention order (names or object ids)."""
        refs: dict[str, None] = {}
        for mapping in self.mappings:
            if isinstance(mapping.match, GroupsMatchConfig):
                refs.update(dict.fromkeys(mapping.match.groups))
        return tuple(refs)

    def to_policy(self, groups: MappingABC[str, EntraGroup]) -> Policy:
        """The planner's view, with every group reference resolved by the caller (``groups[ref]``)."""
        return Policy(
            mappings=tuple(_mapping(m, groups) for m in self.mappings),
            lifecycle=Lifecycle(**self.lifecycle.model_dump(exclude={"settle"})),
            user_id_attribute=self.source.user_id_attribute,
            adopt_existing=self.adopt_existing,
            max_preserve_fraction=self.safety.max_preserve_fraction,
            settle_seconds=self.lifecycle.settle,
        )


class _DuplicateName(ValueError):
    def __init__(self, index: int, first: int) -> None:
        super().__init__(f"mapping name repeats mappings[{first}]; names must be unique")
        self.index = index


def _mapping(config: MappingConfig, groups: MappingABC[str, EntraGroup]) -> Mapping:
    match: Match
    spec = config.match
    if isinstance(spec, GroupsMatchConfig):
        match = GroupMatch(
            tuple(GroupRef(groups[r].id, groups[r].display_name) for r in spec.groups), spec.nested
        )
    elif isinstance(spec, AttributeMatchConfig):
        match = AttributeMatch(spec.attribute, tuple(spec.values), spec.ignore_case)
    else:
        match = AllMatch()
    target = Target(config.target.profile, config.target.storage, config.target.quota)
    return Mapping(config.name, match, target, config.kinds, config.adopt_existing)


# --- loading and error reporting -------------------------------------------------------------------


T = TypeVar("T")
MAX_PROBLEMS = 20  # listed; the rest are counted: a million bad values must not print a million lines


def load_config(path: str | Path) -> ProvisioningConfig:
    path = Path(path)
    try:
        data = read_bytes(path)
    except OSError as error:
        raise ConfigError([f"{path}: cannot read the configuration: {error.strerror or error}"]) from None
    except UnsafeYaml as unsafe:
        raise ConfigError([f"{path}: {p}" for p in unsafe.problems]) from None
    try:
        text = decode(data)
    except UnsafeYaml as unsafe:
        raise ConfigError(_listed(unsafe.problems, lambda p: _sourced(str(path), p))) from None
    return parse_config(text, str(path))


def parse_config(text: str, source: str = "<config>") -> ProvisioningConfig:
    try:
        read = read_yaml(text)
    except UnsafeYaml as unsafe:
        raise ConfigError(_listed(unsafe.problems, lambda p: _sourced(source, p))) from None
    except yaml.YAMLError as error:
        raise ConfigError([_yaml_problem(source, error)]) from None
    except RecursionError:  # bounded by read_yaml's depth check; kept so no input can give a traceback
        raise ConfigError([f"{source}: nested too deeply"]) from None
    raw, tree = read.data, read.tree
    if raw is None:
        raise ConfigError([f"{source}: the configuration is empty; it needs at least a mappings list"])
    if not isinstance(raw, dict):
        raise ConfigError(
            [f"{source}: the top level must be a mapping with source, mappings, lifecycle, safety"]
        )
    try:
        return ProvisioningConfig.model_validate(raw)
    except ValidationError as error:
        errors = _fold_misspellings(error.errors(include_url=False))
        raise ConfigError(_listed(errors, lambda e: _problem(source, raw, tree, e))) from None


def _sourced(source: str, problem: str) -> str:
    """``line 3: …`` → ``mappings.yaml:3: …``; a problem without a line names the file alone."""
    if problem.startswith("line "):
        return f"{source}:{problem.removeprefix('line ')}"
    return f"{source}: {problem}"


def _listed(problems: Sequence[T], describe: Callable[[T], str]) -> list[str]:
    """At most ``MAX_PROBLEMS`` lines, then one that counts the rest; each line of bounded length."""
    listed = [describe(p) for p in problems[:MAX_PROBLEMS]]
    listed = [line if len(line) <= 400 else f"{line[:399]}…" for line in listed]
    if len(problems) > MAX_PROBLEMS:
        listed.append(f"and {len(problems) - MAX_PROBLEMS} more")
    return listed


def _fold_misspellings(errors: list[Any]) -> list[Any]:
    """A misspelt key shows up twice (unknown 'value', required 'values'): report it once, with a hint."""
    missing = {tuple(e["loc"]): e for e in errors if e["type"] == "missing"}
    folded, dropped = [], set()
    for error in errors:
        hinted = error
        if error["type"] == "extra_forbidden":
            *parent, key = error["loc"]
            siblings = [loc[-1] for loc in missing if list(loc[:-1]) == parent and loc not in dropped]
            close = difflib.get_close_matches(str(key), [str(s) for s in siblings], n=1, cutoff=0.6)
            if close:
                dropped.add((*parent, close[0]))
                hinted = {**error, "suggestion": close[0]}
        folded.append(hinted)
    return [e for e in folded if tuple(e["loc"]) not in dropped]


def _yaml_problem(source: str, error: yaml.YAMLError) -> str:
    mark = getattr(error, "problem_mark", None)
    where = f"{source}:{mark.line + 1}" if mark else source
    problem = getattr(error, "problem", None) or str(error)
    return f"{where}: not valid YAML: {problem}"


def _problem(source: str, raw: dict[str, Any], tree: yaml.Node | None, error: Any) -> str:
    loc = [p for p in error["loc"] if p not in MATCH_KEYS.values()]
    ctx_error = (error.get("ctx") or {}).get("error")
    if isinstance(ctx_error, _DuplicateName):
        loc = ["mappings", ctx_error.index, "name"]
    line = _line_of(tree, loc)
    where = f"{source}:{line}" if line else source
    # an unknown key belongs to the block that holds it
    block = loc[:-1] if error["type"] == "extra_forbidden" else loc
    return f"{where}: {_describe_location(raw, block)}: {_message(error, loc)}"


def _describe_location(raw: dict[str, Any], loc: list[Any]) -> str:
    parts: list[str] = []
    for index, part in enumerate(loc):
        if isinstance(part, int):
            parts[-1] += f"[{part}]"
            if loc[:index] == ["mappings"]:
                parts[-1] += _mapping_name(raw, part)
        else:
            parts.append(str(part))
    head, *rest = parts or ["(top level)"]
    if head.startswith("mappings[") and rest:
        return f"{head}: {'.'.join(rest)}"
    return ".".join(parts) if parts else "(top level)"


def _mapping_name(raw: dict[str, Any], index: int) -> str:
    mappings = raw.get("mappings")
    if isinstance(mappings, list) and index < len(mappings) and isinstance(mappings[index], dict):
        name = mappings[index].get("name")
        if isinstance(name, str) and name.strip():
            name = name.strip()
            return f' "{name if len(name) <= SHOWN else name[: SHOWN - 1] + "…"}"'
    return ""


def _message(error: Any, loc: list[Any]) -> str:
    kind, message = error["type"], error["msg"]
    if kind == "missing":
        return "is required"
    if kind == "extra_forbidden":
        if "suggestion" in error:
            return f"unknown key {short(loc[-1])} (did you mean {error['suggestion']}?)"
        allowed = _allowed_keys(loc[:-1], error)
        return f"unknown key {short(loc[-1])}" + (f" (allowed: {', '.join(allowed)})" if allowed else "")
    if kind == "too_short":
        return "must list at least one value"
    if kind == "enum":
        expected = (error.get("ctx") or {}).get("expected", "")
        return f"{short(error['input'])} is not one of {expected}"
    if kind in {"union_tag_not_found", "union_tag_invalid"}:
        return "takes exactly one of groups, attribute or all"
    if kind in {"bool_type", "model_type", "list_type", "dict_type"}:
        return f"{message.lower()}, got {short(error['input'])}"
    return str(message).removeprefix("Value error, ")


_MATCH_MODELS: dict[str, type[BaseModel]] = {
    "by_groups": GroupsMatchConfig,
    "by_attribute": AttributeMatchConfig,
    "all_users": AllMatchConfig,
}


def _allowed_keys(loc: list[Any], error: Any) -> list[str]:
    model: type[BaseModel] = ProvisioningConfig
    for part in loc:
        if isinstance(part, int):
            continue
        if part == "match":
            tag = next((p for p in error["loc"] if p in MATCH_KEYS.values()), None)
            model = _MATCH_MODELS.get(tag or "", AllMatchConfig)
            continue
        annotation = model.model_fields[part].annotation if part in model.model_fields else None
        nested = _model_in(annotation)
        if nested is None:
            return []
        model = nested
    return list(model.model_fields)


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _model_in(arg)
        if found:
            return found
    return None


def _line_of(node: yaml.Node | None, loc: list[Any]) -> int | None:
    """1-based line of the deepest YAML node the error location reaches."""
    best = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        if isinstance(node, yaml.MappingNode) and isinstance(part, str):
            pair = next(((k, v) for k, v in node.value if getattr(k, "value", None) == part), None)
            if pair is None:
                break
            best, node = pair[0].start_mark.line + 1, pair[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            best = node.start_mark.line + 1
        else:
            break
    return best


def require_resolvable(refs: tuple[str, ...], resolved: MappingABC[str, EntraGroup]) -> None:
    """Every group a mapping names must exist and be of a supported kind."""
    problems = []
    for ref in refs:
        group = resolved.get(ref)
        if group is None:
            problems.append(f"group {ref!r}: not found in Entra")
        elif not group.supported:
            problems.append(
                f"group {ref!r}: {group.describe()} is not a Microsoft 365, Security, "
                "Distribution or Mail-enabled security group"
            )
    if problems:
        raise ConfigError(problems)
