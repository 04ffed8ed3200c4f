"""The simulated organization's schema: tables, columns, option sets, lookups, one N:N relationship.

Names follow Dataverse's out-of-box tables where they exist (``account``, ``contact``,
``opportunity``, ``systemuser``, ``team``, ``transactioncurrency``) and use the ``des_`` publisher
prefix for what is custom (the ``des_channels`` multi-select column, the ``des_account_contact``
N:N relationship and its intersect table). Metadata shapes follow reference section D.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field, replace
from functools import cached_property

_NS = uuid.UUID("5b0d7f0e-2f52-4b7c-9f10-5a1d0c0de001")  # deterministic MetadataIds


def metadata_id(*parts: str) -> str:
    return str(uuid.uuid5(_NS, "/".join(parts)))


@dataclass(frozen=True)
class Option:
    value: int
    label: str
    state: int | None = None  # Status options: the state they belong to
    default_status: int | None = None  # State options: their default status


@dataclass(frozen=True)
class OptionSetDef:
    name: str
    options: tuple[Option, ...]
    option_set_type: str = "Picklist"  # Picklist, State, Status, Boolean
    is_global: bool = False

    def label(self, value: int) -> str | None:
        for option in self.options:
            if option.value == value:
                return option.label
        return None

    def values(self) -> frozenset[int]:
        return frozenset(o.value for o in self.options)


# AttributeType (AttributeTypeCode) -> default AttributeTypeName value and the metadata cast type name.
TYPE_NAMES: dict[str, tuple[str, str]] = {
    "Uniqueidentifier": ("UniqueidentifierType", "UniqueIdentifierAttributeMetadata"),
    "String": ("StringType", "StringAttributeMetadata"),
    "Memo": ("MemoType", "MemoAttributeMetadata"),
    "Integer": ("IntegerType", "IntegerAttributeMetadata"),
    "BigInt": ("BigIntType", "BigIntAttributeMetadata"),
    "Decimal": ("DecimalType", "DecimalAttributeMetadata"),
    "Double": ("DoubleType", "DoubleAttributeMetadata"),
    "Money": ("MoneyType", "MoneyAttributeMetadata"),
    "Boolean": ("BooleanType", "BooleanAttributeMetadata"),
    "DateTime": ("DateTimeType", "DateTimeAttributeMetadata"),
    "Picklist": ("PicklistType", "PicklistAttributeMetadata"),
    "State": ("StateType", "StateAttributeMetadata"),
    "Status": ("StatusType", "StatusAttributeMetadata"),
    "Lookup": ("LookupType", "LookupAttributeMetadata"),
    "Customer": ("CustomerType", "LookupAttributeMetadata"),
    "Owner": ("OwnerType", "LookupAttributeMetadata"),
    "Virtual": ("MultiSelectPicklistType", "MultiSelectPicklistAttributeMetadata"),
}
LOOKUP_TYPES = frozenset({"Lookup", "Customer", "Owner"})
OPTION_TYPES = frozenset({"Picklist", "State", "Status"})


@dataclass(frozen=True)
class AttributeDef:
    logical_name: str
    type: str  # AttributeTypeCode; multi-select is Virtual + MultiSelectPicklistType
    entity: str = ""
    targets: tuple[str, ...] = ()
    option_set: OptionSetDef | None = None
    max_length: int | None = None
    precision: int | None = None
    date_only: bool = False  # DateTimeAttributeMetadata.Format = DateOnly
    is_primary_id: bool = False
    is_primary_name: bool = False
    valid_for_create: bool = True
    valid_for_update: bool = True
    attribute_of: str | None = None
    required: bool = False

    @property
    def type_name(self) -> str:
        return TYPE_NAMES[self.type][0]

    @property
    def cast(self) -> str:
        return TYPE_NAMES[self.type][1]

    @property
    def is_lookup(self) -> bool:
        return self.type in LOOKUP_TYPES

    @property
    def is_multiselect(self) -> bool:
        return self.type == "Virtual"

    @property
    def web_name(self) -> str:
        """The property name in Web API rows: ``_<lookup>_value`` for lookups."""
        return f"_{self.logical_name}_value" if self.is_lookup else self.logical_name

    @property
    def schema_name(self) -> str:
        return "".join(p[:1].upper() + p[1:] for p in self.logical_name.split("_"))

    @property
    def metadata_id(self) -> str:
        return metadata_id(self.entity, self.logical_name)

    def navigation_property(self, target: str) -> str:
        """The single-valued navigation property for a lookup pointing at ``target``: polymorphic
        Customer lookups have one per target (``parentcustomerid_account``); Owner and simple lookups
        use the attribute's own name."""
        return f"{self.logical_name}_{target}" if self.type == "Customer" else self.logical_name


@dataclass(frozen=True)
class ManyToMany:
    schema_name: str  # also the navigation property name on both sides and the intersect table
    entity1: str
    entity1_attribute: str
    entity2: str
    entity2_attribute: str

    @property
    def intersect_entity(self) -> str:
        return self.schema_name


@dataclass(frozen=True)
class EntityDef:
    logical_name: str
    entity_set_name: str
    primary_id: str
    primary_name: str | None
    object_type_code: int
    attributes: tuple[AttributeDef, ...]
    change_tracking: bool = True
    can_change_tracking_be_enabled: bool = True
    is_intersect: bool = False
    is_custom: bool = False
    many_to_many: tuple[ManyToMany, ...] = field(default=())

    @property
    def schema_name(self) -> str:
        if self.is_custom:
            return self.logical_name
        return self.logical_name[:1].upper() + self.logical_name[1:]

    @property
    def metadata_id(self) -> str:
        return metadata_id(self.logical_name)

    @cached_property
    def _by_name(self) -> dict[str, AttributeDef]:
        return {a.logical_name: a for a in self.attributes}

    @cached_property
    def _by_web_name(self) -> dict[str, AttributeDef]:
        return {a.web_name: a for a in self.attributes}

    @cached_property
    def reference_columns(self) -> tuple[AttributeDef, ...]:
        """Lookups, and on intersect tables the id columns of the two linked rows."""
        return tuple(a for a in self.attributes if a.is_lookup or (
            self.is_intersect and a.type == "Uniqueidentifier" and not a.is_primary_id))

    def attribute(self, logical_name: str) -> AttributeDef | None:
        return self._by_name.get(logical_name)

    def by_web_name(self) -> dict[str, AttributeDef]:
        return self._by_web_name

    def with_attribute(self, attr: AttributeDef) -> EntityDef:
        return replace(self, attributes=(*self.attributes, replace(attr, entity=self.logical_name)))


# ------------------------------------------------------------------------------------------ option sets
def _opts(*pairs: tuple[int, str]) -> tuple[Option, ...]:
    return tuple(Option(v, label) for v, label in pairs)


INDUSTRY = OptionSetDef("account_industrycode", _opts(
    (1, "Accounting"), (2, "Agriculture and Non-petrol Natural Resource Extraction"),
    (3, "Broadcasting Printing and Publishing"), (4, "Brokers"), (5, "Building Supply Retail"),
    (6, "Business Services"), (7, "Consulting"), (8, "Consumer Services"),
    (9, "Design, Direction and Creative Management"), (10, "Distributors, Dispatchers and Processors"),
    (11, "Doctor's Offices and Clinics"), (12, "Durable Manufacturing"), (13, "Eating and Drinking Places"),
    (14, "Entertainment Retail"), (15, "Equipment Rental and Leasing"), (16, "Financial"),
))
CUSTOMER_TYPE = OptionSetDef("account_customertypecode", _opts(
    (1, "Competitor"), (2, "Consultant"), (3, "Customer"), (4, "Investor"), (5, "Partner"), (6, "Influencer"),
    (7, "Press"), (8, "Prospect"), (9, "Reseller"), (10, "Supplier"), (11, "Vendor"), (12, "Other"),
))
CHANNELS = OptionSetDef("des_channel", _opts(
    (100000000, "E-mail"), (100000001, "Phone"), (100000002, "Letter"), (100000003, "Fax"), (100000004, "Social"),
), is_global=True)
GENDER = OptionSetDef("contact_gendercode", _opts((1, "Male"), (2, "Female")))
CONTACT_METHOD = OptionSetDef("contact_preferredcontactmethodcode", _opts(
    (1, "Any"), (2, "Email"), (3, "Phone"), (4, "Fax"), (5, "Mail"),
))
RATING = OptionSetDef("opportunity_opportunityratingcode", _opts((1, "Hot"), (2, "Warm"), (3, "Cold")))


def _state(entity: str, *options: tuple[int, str, int]) -> OptionSetDef:
    return OptionSetDef(f"{entity}_statecode", tuple(Option(v, label, default_status=d) for v, label, d in options),
                        option_set_type="State")


def _status(entity: str, *options: tuple[int, str, int]) -> OptionSetDef:
    return OptionSetDef(f"{entity}_statuscode", tuple(Option(v, label, state=s) for v, label, s in options),
                        option_set_type="Status")


ACTIVE_INACTIVE = ((0, "Active", 1), (1, "Inactive", 2))
ACTIVE_INACTIVE_STATUS = ((1, "Active", 0), (2, "Inactive", 1))
OPPORTUNITY_STATE = ((0, "Open", 1), (1, "Won", 3), (2, "Lost", 4))
OPPORTUNITY_STATUS = ((1, "In Progress", 0), (2, "On Hold", 0), (3, "Won", 1), (4, "Canceled", 2), (5, "Out-Sold", 2))


# ------------------------------------------------------------------------------------------ tables
def _a(name: str, type_: str, **kw: object) -> AttributeDef:
    return AttributeDef(name, type_, **kw)  # type: ignore[arg-type]


def _system(entity: str, *, money: bool = False, state: OptionSetDef | None = None,
            status: OptionSetDef | None = None, owner: bool = True) -> tuple[AttributeDef, ...]:
    attrs = [
        _a("createdon", "DateTime", valid_for_create=False, valid_for_update=False),
        _a("modifiedon", "DateTime", valid_for_create=False, valid_for_update=False),
        _a("versionnumber", "BigInt", valid_for_create=False, valid_for_update=False),
    ]
    if owner:
        attrs.append(_a("ownerid", "Owner", targets=("systemuser", "team")))
    if money:
        attrs.append(_a("transactioncurrencyid", "Lookup", targets=("transactioncurrency",)))
        attrs.append(_a("exchangerate", "Decimal", precision=10, valid_for_create=False, valid_for_update=False))
    if state is not None and status is not None:
        attrs.append(_a("statecode", "State", option_set=state))
        attrs.append(_a("statuscode", "Status", option_set=status))
    return tuple(attrs)


def _entity(logical: str, entity_set: str, primary_name: str | None, otc: int, *attrs: AttributeDef,
            primary_id: str | None = None, **kw: object) -> EntityDef:
    pid = primary_id or f"{logical}id"
    own = (_a(pid, "Uniqueidentifier", is_primary_id=True, valid_for_update=False),)
    all_attrs = tuple(
        replace(a, entity=logical, is_primary_name=a.logical_name == primary_name) for a in own + attrs
    )
    return EntityDef(logical, entity_set, pid, primary_name, otc, all_attrs, **kw)  # type: ignore[arg-type]


ACCOUNT_CONTACT = ManyToMany("des_account_contact", "account", "accountid", "contact", "contactid")


def build_entities() -> dict[str, EntityDef]:
    """The organization's tables, keyed by logical name (a fresh copy: the simulator may add columns)."""
    account = _entity(
        "account", "accounts", "name", 1,
        _a("name", "String", max_length=160, required=True),
        _a("accountnumber", "String", max_length=20),
        _a("telephone1", "String", max_length=50),
        _a("emailaddress1", "String", max_length=100),
        _a("address1_city", "String", max_length=80),
        _a("description", "Memo", max_length=2000),
        _a("industrycode", "Picklist", option_set=INDUSTRY),
        _a("customertypecode", "Picklist", option_set=CUSTOMER_TYPE),
        _a("des_channels", "Virtual", option_set=CHANNELS),
        _a("numberofemployees", "Integer"),
        _a("revenue", "Money", precision=2),
        _a("revenue_base", "Money", precision=4, attribute_of="revenue", valid_for_create=False,
           valid_for_update=False),
        _a("creditlimit", "Money", precision=2),
        _a("creditonhold", "Boolean", option_set=OptionSetDef("account_creditonhold", _opts((0, "No"), (1, "Yes")),
                                                              option_set_type="Boolean")),
        _a("des_score", "Double", precision=2),
        _a("lastusedincampaign", "DateTime"),
        _a("des_founded", "DateTime", date_only=True),
        _a("parentaccountid", "Lookup", targets=("account",)),
        _a("primarycontactid", "Lookup", targets=("contact",)),
        *_system("account", money=True, state=_state("account", *ACTIVE_INACTIVE),
                 status=_status("account", *ACTIVE_INACTIVE_STATUS)),
        many_to_many=(ACCOUNT_CONTACT,),
    )
    contact = _entity(
        "contact", "contacts", "fullname", 2,
        _a("fullname", "String", max_length=160, valid_for_create=False, valid_for_update=False),
        _a("firstname", "String", max_length=50),
        _a("lastname", "String", max_length=50, required=True),
        _a("emailaddress1", "String", max_length=100),
        _a("jobtitle", "String", max_length=100),
        _a("birthdate", "DateTime", date_only=True),
        _a("gendercode", "Picklist", option_set=GENDER),
        _a("preferredcontactmethodcode", "Picklist", option_set=CONTACT_METHOD),
        _a("donotemail", "Boolean", option_set=OptionSetDef(
            "contact_donotemail", _opts((0, "Allow"), (1, "Do Not Allow")), option_set_type="Boolean")),
        _a("annualincome", "Money", precision=2),
        _a("description", "Memo", max_length=2000),
        _a("parentcustomerid", "Customer", targets=("account", "contact")),
        *_system("contact", money=True, state=_state("contact", *ACTIVE_INACTIVE),
                 status=_status("contact", *ACTIVE_INACTIVE_STATUS)),
        many_to_many=(ACCOUNT_CONTACT,),
    )
    opportunity = _entity(
        "opportunity", "opportunities", "name", 3,
        _a("name", "String", max_length=300, required=True),
        _a("stepname", "String", max_length=200),
        _a("closeprobability", "Integer"),
        _a("estimatedvalue", "Money", precision=2),
        _a("estimatedclosedate", "DateTime", date_only=True),
        _a("opportunityratingcode", "Picklist", option_set=RATING),
        _a("description", "Memo", max_length=2000),
        _a("parentaccountid", "Lookup", targets=("account",)),
        _a("parentcontactid", "Lookup", targets=("contact",)),
        _a("customerid", "Customer", targets=("account", "contact")),
        *_system("opportunity", money=True, state=_state("opportunity", *OPPORTUNITY_STATE),
                 status=_status("opportunity", *OPPORTUNITY_STATUS)),
    )
    intersect = _entity(
        ACCOUNT_CONTACT.schema_name, f"{ACCOUNT_CONTACT.schema_name}set", None, 10001,
        _a("accountid", "Uniqueidentifier", valid_for_update=False),
        _a("contactid", "Uniqueidentifier", valid_for_update=False),
        _a("versionnumber", "BigInt", valid_for_create=False, valid_for_update=False),
        is_intersect=True, is_custom=True,
    )
    systemuser = _entity(
        "systemuser", "systemusers", "fullname", 8,
        _a("fullname", "String", max_length=200),
        _a("domainname", "String", max_length=1024),
        _a("createdon", "DateTime", valid_for_create=False, valid_for_update=False),
        _a("modifiedon", "DateTime", valid_for_create=False, valid_for_update=False),
        _a("versionnumber", "BigInt", valid_for_create=False, valid_for_update=False),
        change_tracking=False,
    )
    team = _entity(
        "team", "teams", "name", 9,
        _a("name", "String", max_length=160),
        _a("createdon", "DateTime", valid_for_create=False, valid_for_update=False),
        _a("modifiedon", "DateTime", valid_for_create=False, valid_for_update=False),
        _a("versionnumber", "BigInt", valid_for_create=False, valid_for_update=False),
        change_tracking=False,
    )
    currency = _entity(
        "transactioncurrency", "transactioncurrencies", "currencyname", 9105,
        _a("currencyname", "String", max_length=100),
        _a("isocurrencycode", "String", max_length=5),
        _a("currencysymbol", "String", max_length=13),
        _a("exchangerate", "Decimal", precision=10),
        _a("createdon", "DateTime", valid_for_create=False, valid_for_update=False),
        _a("modifiedon", "DateTime", valid_for_create=False, valid_for_update=False),
        _a("versionnumber", "BigInt", valid_for_create=False, valid_for_update=False),
        change_tracking=False,
    )
    return {e.logical_name: e for e in (account, contact, opportunity, intersect, systemuser, team, currency)}


TRACKED_DEFAULT = ("account", "contact", "opportunity", ACCOUNT_CONTACT.schema_name)
