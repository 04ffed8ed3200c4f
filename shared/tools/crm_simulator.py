"""A deterministic simulator of a Dataverse organization, its Service Bus transport, and the truth.

:class:`CrmSimulator` keeps the current state of every ``account``, ``contact`` and ``opportunity``
record (and which records are deleted) and emits wire-contract v1 notifications (JSON-ready dicts)
for an initial sync and for a stream of changes. :func:`deliver` turns the ordered stream into what
a Service Bus queue hands the function: at-least-once, duplicated (sometimes much later), locally
reordered, some bodies batch envelopes. :func:`check_convergence` compares a destination with the
simulator's :class:`Truth`.

:func:`bench_lines` is the stream ``python -m shared bench`` measures: one entity, a fixed number of
attributes of mixed types, generated from pre-built templates so that generating it costs little
next to applying it, and streamed (bounded memory).

Everything is seeded (``random.Random(seed)``): the same seed gives the same bodies, byte for byte.
"""

from __future__ import annotations

import heapq
import json
import math
import random
import unicodedata
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, NamedTuple

from shared.destinations.inspect import table_rows
from shared.engine.ports import ID, SYSTEM_COLUMNS, VERSION, Destination, Layout

Wire = dict[str, Any]  # one notification as a JSON-ready dict (the wire contract v1)
Fields = dict[str, Any]

ENTITIES = ("account", "contact", "opportunity")
LOOKUP_TYPE_SUFFIX = "_entitytype"
START = datetime(2026, 1, 5, 8, 0, 0, tzinfo=UTC)
_DUMPS_COMPACT = {"ensure_ascii": False, "separators": (",", ":")}

# ------------------------------------------------------------------------------------ sample data
ACCOUNT_NAMES = (
    "Contoso", "Fabrikam", "Société Générale", "Müller GmbH", "東京商事", "Ærø Fisk", "Škoda Partners",
    "O'Brien & Sons", "Café Olé", "Nordic Tråd", "Łódź Logistics", "São Paulo Comércio", "Zürich Rück",
    "Αθηνά Εμπορική", "Москва Трейд", "مجموعة الخليج", "서울 무역", "Adventure Works", "Northwind Traders",
    "Tailspin Toys", "Wide World Importers", "Litware", "Proseware", "Alpine Ski House", "Coho Winery",
    "Blue Yonder Airlines", "Humongous Insurance", "Fourth Coffee", "Trey Research", 'The "Best" Widgets; Ltd',
    "Robert'); DROP TABLE account;--", "Ünal Tekstil", "Brødrene Dahl", "Ça Va Bien", "Nguyễn Trading",
)
LEGAL_FORMS = ("", "", " Inc.", " Ltd", " GmbH", " SA", " S.à r.l.", " KK", " AB", " ApS", " Sp. z o.o.", " LLC")
EMOJI = (" 🚀", " ☕", " 🌍", " ✨", " 🏭")
CITIES = (
    ("Paris", "FR"), ("München", "DE"), ("東京", "JP"), ("São Paulo", "BR"), ("Zürich", "CH"), ("Kraków", "PL"),
    ("Reykjavík", "IS"), ("New York", "US"), ("Seattle", "US"), ("Cape Town", "ZA"), ("İstanbul", "TR"),
    ("Montréal", "CA"), ("Århus", "DK"), ("Sevilla", "ES"), ("Göteborg", "SE"), ("Lyon", "FR"),
)
FIRST_NAMES = (
    "Anna", "José", "Zoë", "Łukasz", "Søren", "Chloé", "太郎", "Ólafur", "Nuño", "Mary-Jane", "D'Arcy", "Ahmed",
    "Priya", "Björk", "Émile", "Jürgen", "Siobhán", "Wei", "Ørjan", "Ayşe", "Nikolai", "Fatima", "John", "Maria",
)
LAST_NAMES = (
    "Müller", "García", "Nakamura", "O'Neil", "Ødegaard", "Smith", "Dubois", "Kowalski", "山田", "Nguyễn",
    "van der Berg", "Žukauskas", "Brontë", "Fernández", "Öztürk", "Ivanova", "Johnson", "Rossi", "Møller",
)
JOB_TITLES = ("CEO", "CFO", "Head of IT", "Buyer", "Einkäufer", "Directrice financière", "営業部長", "Office manager")
TOPICS = (
    "licences", "support renewal", "Rollout Phase 2", "migration to cloud", "Wartungsvertrag", "extension",
    "pilot", "formation", "保守契約", "upgrade", "hardware refresh",
)
STEPS = ("1-Qualify", "2-Develop", "3-Propose", "4-Close")
WORDS = (
    "customer", "asked", "for", "a", "quote", "meeting", "next", "week", "about", "the", "renewal", "Kunde",
    "möchte", "Angebot", "réunion", "prévue", "avec", "l'équipe", "déjà", "signé", "注文", "確認", "済み",
    "follow-up", "call", "budget", "approved", "\"urgent\"", "stakeholders;", "50%", "discount?", "ñandú", "🚀",
)
CURRENCY_IDS = (
    "8f4a3f64-6f4b-4c0e-9a7e-0d6b6f1c2a01",  # EUR
    "8f4a3f64-6f4b-4c0e-9a7e-0d6b6f1c2a02",  # USD
    "8f4a3f64-6f4b-4c0e-9a7e-0d6b6f1c2a03",  # JPY
)


def _slug(text: str) -> str:
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    return "".join(ch for ch in ascii_text.lower() if ch.isalnum())


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def lookup(record_id: str, logical_name: str) -> dict[str, str]:
    return {"id": record_id, "logicalName": logical_name}


# ------------------------------------------------------------------------------------------ truth
class Expected(NamedTuple):
    """A record as the destination must hold it: its version and its attribute columns."""

    version: int
    attributes: dict[str, object]


@dataclass
class Truth:
    """The source's current state: live records per entity (lower-case ids) and deleted keys."""

    records: dict[str, dict[str, Expected]]
    deleted: set[tuple[str, str]]

    def __getitem__(self, entity: str) -> dict[str, Expected]:
        return self.records[entity]

    def __iter__(self) -> Iterator[str]:
        return iter(self.records)


def destination_columns(attributes: dict[str, Any], lookups: Iterable[str] = ()) -> dict[str, object]:
    """Wire attributes as destination columns: a lookup becomes ``<attr>`` and ``<attr>_entitytype``.

    ``lookups`` names lookup attributes whose value may be null, so both of their columns are known.
    """
    out: dict[str, object] = {}
    for name in lookups:
        out[name] = None
        out[name + LOOKUP_TYPE_SUFFIX] = None
    for name, value in attributes.items():
        if isinstance(value, dict):
            out[name] = str(value["id"]).lower()
            out[name + LOOKUP_TYPE_SUFFIX] = value["logicalName"]
        else:
            out[name] = value
    return out


# ------------------------------------------------------------------------------------ the simulator
@dataclass
class _EntityState:
    live: dict[str, Fields] = field(default_factory=dict)  # record id -> current wire attributes
    versions: dict[str, int] = field(default_factory=dict)  # record id -> version of its last change
    deleted: dict[str, int] = field(default_factory=dict)  # record id -> version of its delete
    order: list[str] = field(default_factory=list)  # every id ever created; low index = hot


class CrmSimulator:
    """A seeded Dataverse organization: accounts, contacts and opportunities, and their changes.

    Versions come from one organization-wide counter (like Dataverse's ``versionnumber``) and
    ``changedOn`` moves forward with it. ``initial_sync()`` and ``changes(n)`` yield notifications
    (JSON-ready dicts); the simulator's state after them is :meth:`truth`.
    """

    LOOKUPS: dict[str, tuple[str, ...]] = {
        "account": ("primarycontactid", "parentaccountid"),
        "contact": ("parentcustomerid",),
        "opportunity": ("customerid", "transactioncurrencyid"),
    }

    def __init__(
        self,
        seed: int = 7,
        *,
        accounts: int = 2000,
        contacts: int = 2000,
        opportunities: int = 2000,
        upper_case_ids: float = 0.03,
    ) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.organization_id = self._guid()
        self.counts = {"account": accounts, "contact": contacts, "opportunity": opportunities}
        self.upper_case_ids = upper_case_ids
        self._version = 1_000_000 + self.rng.randrange(100_000)
        self._now = START
        self._state = {e: _EntityState() for e in ENTITIES}
        # Ids of the initial records are drawn up front so lookups can point at any of them.
        self._initial_ids = {e: [self._guid() for _ in range(n)] for e, n in self.counts.items()}
        self._evolved = False  # a customization adds account.new_customertier during changes()
        self._generators: dict[str, list[Callable[[], Fields]]] = {
            "account": [
                self._account_name, self._money_group("revenue", 0.15), self._employees, self._account_codes,
                self._state_group, self._flags("donotemail", "donotphone", "creditonhold"), self._address,
                self._phone("telephone1"), self._website, self._description, self._primary_contact,
                self._parent_account,
            ],
            "contact": [
                self._person, self._job, self._parent_customer, self._birthdate, self._contact_codes,
                self._money_group("creditlimit", 0.4), self._children, self._phone("telephone1"),
                self._phone("mobilephone"), self._address, self._flags("donotemail", "donotbulkemail"),
                self._state_group, self._description,
            ],
            "opportunity": [
                self._topic, self._money_group("estimatedvalue", 0.05), self._close_date, self._customer,
                self._pipeline, self._money_group("budgetamount", 0.5), self._currency,
                self._flags("isrevenuesystemcalculated"), self._description,
            ],
        }

    # ------------------------------------------------------------------------------- primitives
    def _guid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def _tick(self, max_ms: int) -> tuple[int, str]:
        self._version += self.rng.randint(1, 3)
        self._now += timedelta(milliseconds=self.rng.randint(1, max_ms))
        return self._version, _iso(self._now)

    def _maybe(self, p_null: float, value: Any) -> Any:
        return None if self.rng.random() < p_null else value

    def _money(self, low: float, high: float) -> float | int:
        value = round(self.rng.uniform(low, high), 2)
        if self.rng.random() < 0.15:
            return int(round(value, -2))  # Dataverse serializes 1000.00 as 1000
        return value

    def _past_datetime(self) -> str:
        moment = datetime(2015, 1, 1, tzinfo=UTC) + timedelta(seconds=self.rng.randrange(11 * 365 * 86400))
        return moment.strftime("%Y-%m-%dT%H:%M:%SZ")

    def _text(self, words: int) -> str:
        return " ".join(self.rng.choice(WORDS) for _ in range(words))

    def _pick_id(self, entity: str) -> str:
        ids = self._state[entity].order or self._initial_ids[entity]
        return self.rng.choice(ids) if ids else self._guid()

    # ---------------------------------------------------------------------- attribute groups
    def _account_name(self) -> Fields:
        rng = self.rng
        name = rng.choice(ACCOUNT_NAMES) + rng.choice(LEGAL_FORMS)
        if rng.random() < 0.2:
            name += f" ({rng.choice(CITIES)[0]})"
        if rng.random() < 0.05:
            name += rng.choice(EMOJI)
        number = self._maybe(0.1, f"ACC-{rng.randrange(1_000_000):06d}")
        return {"name": name, "accountnumber": number}

    def _money_group(self, name: str, p_null: float) -> Callable[[], Fields]:
        def gen() -> Fields:
            return {name: self._maybe(p_null, self._money(100.0, 5_000_000.0))}

        return gen

    def _employees(self) -> Fields:
        return {"numberofemployees": self._maybe(0.2, int(self.rng.paretovariate(1.2) * 5))}

    def _account_codes(self) -> Fields:
        rng = self.rng
        codes: Fields = {
            "industrycode": self._maybe(0.3, rng.randint(1, 33)),
            "accountcategorycode": self._maybe(0.4, rng.randint(1, 2)),
            "customertypecode": rng.randint(1, 12),
            "ownershipcode": self._maybe(0.5, rng.randint(1, 4)),
        }
        if self._evolved:
            codes["new_customertier"] = self._maybe(0.3, rng.randint(1, 4))
        return codes

    def _state_group(self) -> Fields:
        inactive = self.rng.random() < 0.1
        return {"statecode": 1 if inactive else 0, "statuscode": 2 if inactive else 1}

    def _flags(self, *names: str) -> Callable[[], Fields]:
        def gen() -> Fields:
            return {n: self.rng.random() < 0.2 for n in names}  # two-option sets are never null

        return gen

    def _address(self) -> Fields:
        city, country = self.rng.choice(CITIES)
        return {
            "address1_city": self._maybe(0.1, city),
            "address1_country": self._maybe(0.1, country),
            "address1_postalcode": self._maybe(0.2, f"{self.rng.randrange(100_000):05d}"),  # leading zeros
        }

    def _phone(self, name: str) -> Callable[[], Fields]:
        def gen() -> Fields:
            digits = " ".join(f"{self.rng.randrange(100):02d}" for _ in range(4))
            return {name: self._maybe(0.25, f"+{self.rng.randint(1, 99)} {self.rng.randint(1, 9)} {digits}")}

        return gen

    def _website(self) -> Fields:
        host = _slug(self.rng.choice(ACCOUNT_NAMES)) or "firm"
        return {"websiteurl": self._maybe(0.3, f"https://www.{host}.example")}

    def _description(self) -> Fields:
        r = self.rng.random()
        if r < 0.35:
            return {"description": None}
        if r < 0.92:
            return {"description": self._text(self.rng.randint(3, 25))}
        return {"description": self._text(self.rng.randint(300, 900))}  # long notes (several KB)

    def _primary_contact(self) -> Fields:
        value = lookup(self._pick_id("contact"), "contact") if self.rng.random() < 0.7 else None
        return {"primarycontactid": value}

    def _parent_account(self) -> Fields:
        value = lookup(self._pick_id("account"), "account") if self.rng.random() < 0.1 else None
        return {"parentaccountid": value}

    def _person(self) -> Fields:
        first, last = self.rng.choice(FIRST_NAMES), self.rng.choice(LAST_NAMES)
        local = ".".join(s for s in (_slug(first), _slug(last)) if s) or f"user{self.rng.randrange(10_000)}"
        return {
            "firstname": first,
            "lastname": last,
            "fullname": f"{first} {last}",
            "emailaddress1": self._maybe(0.1, f"{local}{self.rng.randrange(100)}@example.com"),
        }

    def _job(self) -> Fields:
        return {"jobtitle": self._maybe(0.4, self.rng.choice(JOB_TITLES))}

    def _parent_customer(self) -> Fields:
        value = lookup(self._pick_id("account"), "account") if self.rng.random() < 0.8 else None
        return {"parentcustomerid": value}

    def _birthdate(self) -> Fields:
        day = date(1950, 1, 1) + timedelta(days=self.rng.randrange(50 * 365))
        return {"birthdate": self._maybe(0.5, day.isoformat())}

    def _contact_codes(self) -> Fields:
        rng = self.rng
        return {
            "gendercode": self._maybe(0.4, rng.randint(1, 2)),
            "familystatuscode": self._maybe(0.6, rng.randint(1, 4)),
            "preferredcontactmethodcode": rng.randint(1, 5),
        }

    def _children(self) -> Fields:
        return {"numberofchildren": self._maybe(0.6, self.rng.randint(0, 5))}

    def _topic(self) -> Fields:
        return {"name": f"{self.rng.randint(1, 500)} {self.rng.choice(TOPICS)}"}

    def _close_date(self) -> Fields:
        day = date(2026, 1, 1) + timedelta(days=self.rng.randrange(730))
        return {"estimatedclosedate": self._maybe(0.1, day.isoformat())}

    def _customer(self) -> Fields:
        # Polymorphic: an account or a contact.
        target = "account" if self.rng.random() < 0.7 else "contact"
        return {"customerid": self._maybe(0.05, lookup(self._pick_id(target), target))}

    def _pipeline(self) -> Fields:
        rng = self.rng
        step = rng.randrange(len(STEPS))
        state = 0 if rng.random() < 0.8 else rng.choice((1, 2))  # open, won, lost
        status = {0: rng.choice((1, 2)), 1: 3, 2: rng.choice((4, 5))}[state]
        won = state == 1
        return {
            "stepname": STEPS[step],
            "salesstagecode": step,
            "closeprobability": 100 if won else (0 if state == 2 else rng.randint(5, 95)),
            "opportunityratingcode": rng.randint(1, 3),
            "statecode": state,
            "statuscode": status,
            "actualvalue": self._money(100.0, 2_000_000.0) if won else None,
            "actualclosedate": (date(2026, 1, 1) + timedelta(days=rng.randrange(365))).isoformat() if won else None,
        }

    def _currency(self) -> Fields:
        index = self.rng.randrange(len(CURRENCY_IDS))
        return {
            "transactioncurrencyid": lookup(CURRENCY_IDS[index], "transactioncurrency"),
            "exchangerate": (1.0, 1.0873412345, 161.2345678901)[index],
        }

    # ------------------------------------------------------------------------------ notifications
    def _new_state(self, entity: str, created: str) -> Fields:
        attrs: Fields = {}
        for gen in self._generators[entity]:
            attrs.update(gen())
        attrs["createdon"] = created
        return attrs

    def _notification(self, entity: str, rid: str, change: str, tick: tuple[int, str], attrs: Fields | None) -> Wire:
        version, when = tick
        record_id = rid.upper() if self.rng.random() < self.upper_case_ids else rid
        note: Wire = {
            "schemaVersion": 1,
            "organizationId": self.organization_id,
            "entity": entity,
            "recordId": record_id,
            "changeType": change,
            "version": version,
            "changedOn": when,
        }
        if attrs is not None:
            note["attributes"] = attrs
        return note

    def _create(self, entity: str, rid: str, max_ms: int, created: str | None = None) -> Wire:
        tick = version, when = self._tick(max_ms)
        attrs = self._new_state(entity, created or when)
        attrs["modifiedon"] = when
        st = self._state[entity]
        st.live[rid] = attrs
        st.versions[rid] = version
        st.deleted.pop(rid, None)
        return self._notification(entity, rid, "create", tick, attrs)

    def initial_sync(self) -> Iterator[Wire]:
        """A create for every record: accounts, then contacts, then opportunities."""
        for entity in ENTITIES:
            st = self._state[entity]
            for rid in self._initial_ids[entity]:
                if rid in st.live or rid in st.deleted:
                    continue
                st.order.append(rid)
                yield self._create(entity, rid, 20, created=self._past_datetime())

    def _hot(self, entity: str) -> str | None:
        """A live record, skewed towards the first ids (Zipf-like: few records get most updates)."""
        st = self._state[entity]
        if not st.live:
            return None
        for _ in range(8):
            rid = st.order[int(len(st.order) * self.rng.random() ** 3)]
            if rid in st.live:
                return rid
        return self.rng.choice(list(st.live))

    def changes(self, n: int) -> Iterator[Wire]:
        """``n`` changes: updates (skewed to hot records), deletes, re-creations, new records.

        After 30% of them a customization adds ``new_customertier`` to accounts (schema evolution).
        """
        rng = self.rng
        for i in range(n):
            if i >= n * 0.3:
                self._evolved = True
            entity = rng.choices(ENTITIES, weights=(0.35, 0.35, 0.3))[0]
            st = self._state[entity]
            r = rng.random()
            if r < 0.08 and st.deleted:
                rid = rng.choice(list(st.deleted))  # a re-creation (e.g. restored) with a newer version
                yield self._create(entity, rid, 4000)
                continue
            if r < 0.18 and st.live:
                rid = rng.choice(list(st.live))
                tick = version, _ = self._tick(4000)
                del st.live[rid]
                st.versions[rid] = version
                st.deleted[rid] = version
                yield self._notification(entity, rid, "delete", tick, None)
                continue
            hot = self._hot(entity) if r < 0.88 else None
            if hot is None:
                rid = self._guid()
                st.order.append(rid)
                yield self._create(entity, rid, 4000)
                continue
            tick = version, when = self._tick(4000)
            attrs = dict(st.live[hot])
            generators = self._generators[entity]
            for gen in rng.sample(generators, k=rng.randint(1, 3)):
                attrs.update(gen())
            if entity == "account" and self._evolved and "new_customertier" not in attrs:
                attrs["new_customertier"] = self._maybe(0.3, rng.randint(1, 4))
            attrs["modifiedon"] = when
            st.live[hot] = attrs
            st.versions[hot] = version
            yield self._notification(entity, hot, "update", tick, attrs)

    def deliver(
        self,
        notifications: Iterable[Wire],
        duplicate_rate: float = 0.05,
        reorder_window: int = 20,
        envelope_max: int = 10,
        *,
        stats: DeliveryStats | None = None,
    ) -> Iterator[str]:
        """:func:`deliver` with a random stream derived from this simulator's seed."""
        rng = random.Random(f"deliver:{self.seed}:{self.rng.random()}")
        return deliver(
            notifications,
            duplicate_rate=duplicate_rate,
            reorder_window=reorder_window,
            envelope_max=envelope_max,
            rng=rng,
            stats=stats,
        )

    def truth(self) -> Truth:
        records: dict[str, dict[str, Expected]] = {}
        deleted: set[tuple[str, str]] = set()
        for entity, st in self._state.items():
            lookups = self.LOOKUPS[entity]
            records[entity] = {
                rid.lower(): Expected(st.versions[rid], destination_columns(attrs, lookups))
                for rid, attrs in st.live.items()
            }
            deleted.update((entity, rid.lower()) for rid in st.deleted)
        return Truth(records, deleted)


# ---------------------------------------------------------------------------------- the transport
@dataclass
class DeliveryStats:
    notifications_in: int = 0
    notifications_out: int = 0
    duplicates: int = 0
    bodies: int = 0
    envelopes: int = 0


def _reorder(items: Iterable[Wire], window: int, rng: random.Random) -> Iterator[Wire]:
    """Local reordering: item ``i`` leaves at a random moment before item ``i + window`` arrives.

    No item moves more than ``window`` places from where it was sent.
    """
    if window <= 1:
        yield from items
        return
    heap: list[tuple[float, int, Wire]] = []
    for i, item in enumerate(items):
        heapq.heappush(heap, (i + rng.random() * window, i, item))
        while heap[0][0] <= i:
            yield heapq.heappop(heap)[2]
    while heap:
        yield heapq.heappop(heap)[2]


def _duplicate(items: Iterable[Wire], rate: float, rng: random.Random, stats: DeliveryStats) -> Iterator[Wire]:
    """At-least-once: some items come again, mostly soon, some much later (lock lost, redelivery)."""
    pending: list[tuple[int, int, Wire]] = []
    position = 0
    for item in items:
        stats.notifications_in += 1
        while pending and pending[0][0] <= position:
            yield heapq.heappop(pending)[2]
            stats.duplicates += 1
            position += 1
        yield item
        position += 1
        if rate > 0 and rng.random() < rate:
            delay = rng.randint(1, 20) if rng.random() < 0.7 else rng.randint(100, 3000)
            heapq.heappush(pending, (position + delay, position, item))
    while pending:
        yield heapq.heappop(pending)[2]
        stats.duplicates += 1


def _dumps(value: object, rng: random.Random) -> str:
    # Some senders escape non-ASCII characters, others do not: both are the same JSON.
    if rng.random() < 0.2:
        return json.dumps(value, separators=(",", ":"))
    return json.dumps(value, **_DUMPS_COMPACT)  # type: ignore[arg-type]


def deliver(
    notifications: Iterable[Wire],
    duplicate_rate: float = 0.05,
    reorder_window: int = 20,
    envelope_max: int = 10,
    *,
    rng: random.Random | None = None,
    seed: int = 0,
    envelope_rate: float = 0.15,
    stats: DeliveryStats | None = None,
) -> Iterator[str]:
    """What a Service Bus queue hands the function: one message body (``str``) per yield.

    Every notification comes out at least once; ``duplicate_rate`` of them come out again;
    ``reorder_window`` bounds local reordering; about ``envelope_rate`` of the bodies are batch
    envelopes (JSON arrays) of 2..``envelope_max`` notifications, the others single objects.
    Streams: memory is bounded by the window and the pending duplicates.
    """
    rng = rng or random.Random(seed)
    stats = stats if stats is not None else DeliveryStats()
    stream = _duplicate(_reorder(notifications, reorder_window, rng), duplicate_rate, rng, stats)
    group: list[Wire] = []
    target = 1
    for note in stream:
        stats.notifications_out += 1
        if not group:
            target = rng.randint(2, envelope_max) if envelope_max >= 2 and rng.random() < envelope_rate else 1
        group.append(note)
        if len(group) >= target:
            stats.bodies += 1
            if target == 1 and rng.random() > 0.01:
                yield _dumps(group[0], rng)
            else:
                stats.envelopes += 1  # (now and then an envelope of one)
                yield _dumps(group, rng)
            group = []
    if group:
        stats.bodies += 1
        stats.envelopes += 1
        yield _dumps(group, rng)


# --------------------------------------------------------------------------------- convergence
@dataclass(frozen=True, slots=True)
class Mismatch:
    record_id: str
    column: str
    expected: object
    actual: object


@dataclass
class EntityReport:
    entity: str
    table: str
    expected: int = 0
    found: int = 0
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    resurrected: list[str] = field(default_factory=list)  # unexpected rows that are deleted at the source
    mismatched: list[Mismatch] = field(default_factory=list)
    wrong_version: list[tuple[str, int, object]] = field(default_factory=list)  # (id, expected, found)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return not (self.error or self.missing or self.unexpected or self.mismatched or self.wrong_version)

    def problems(self, limit: int = 5) -> list[str]:
        out: list[str] = []
        if self.error:
            out.append(f"{self.table}: {self.error}")
        for rid in self.missing[:limit]:
            out.append(f"{self.table}: missing row {rid}")
        for rid in self.unexpected[:limit]:
            why = " (deleted at the source: resurrected)" if rid in self.resurrected else ""
            out.append(f"{self.table}: unexpected row {rid}{why}")
        for m in self.mismatched[:limit]:
            out.append(f"{self.table}: {m.record_id}.{m.column} is {m.actual!r}, expected {m.expected!r}")
        for rid, want, got in self.wrong_version[:limit]:
            out.append(f"{self.table}: {rid} has versionnumber {got!r}, expected {want}")
        return out


@dataclass
class ConvergenceReport:
    entities: dict[str, EntityReport]

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.entities.values())

    def problems(self, limit: int = 5) -> list[str]:
        return [p for r in self.entities.values() for p in r.problems(limit)]


def _normalize(value: object) -> object:
    """One form for a value as JSON gave it and as a driver returns it.

    SQLite returns booleans as 0/1 and may store an integral REAL as an integer; PostgreSQL returns
    ``uuid.UUID`` and ``Decimal``. Numbers compare by value (as ``Decimal``), GUIDs as text.
    """
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return Decimal(int(value))
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        return Decimal(repr(value)) if math.isfinite(value) else value
    if isinstance(value, Decimal):
        return value
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def _same(expected: object, actual: object) -> bool:
    a, b = _normalize(expected), _normalize(actual)
    if a == b:
        return True
    if isinstance(a, Decimal) and isinstance(b, Decimal) and (isinstance(expected, float) or isinstance(actual, float)):
        # A double that went through a double -> numeric cast keeps 15 significant digits.
        return math.isclose(float(a), float(b), rel_tol=1e-15)
    return False


def _missing_table(exc: BaseException) -> bool:
    sqlstate = getattr(getattr(exc, "diag", None), "sqlstate", None)
    return sqlstate in ("42P01", "42S02") or "no such table" in str(exc)


def check_convergence(destination: Destination, truth: Truth, layout: Layout | None = None) -> ConvergenceReport:
    """Compare every entity table of ``destination`` with ``truth``, value by value.

    A row must exist for every live record, with its version and every attribute column equal
    (columns the record does not have must be NULL); no other row may exist (in particular no
    deleted record may be back).
    """
    layout = layout or destination.layout
    reports: dict[str, EntityReport] = {}
    for entity, expected in truth.records.items():
        table = layout.entity_table(entity)
        report = reports[entity] = EntityReport(entity, table, expected=len(expected))
        try:
            rows = {str(_normalize(row[ID])): row for row in table_rows(destination, table)}
        except Exception as exc:
            if not _missing_table(exc):
                raise
            rows = {}
            if expected:
                report.error = f"table {table!r} does not exist"
        report.found = len(rows)
        for rid, (version, attributes) in expected.items():
            row = rows.get(rid)
            if row is None:
                report.missing.append(rid)
                continue
            if not _same(version, row.get(VERSION)):
                report.wrong_version.append((rid, version, row.get(VERSION)))
            columns = set(attributes).union(c for c in row if c not in SYSTEM_COLUMNS)
            for column in sorted(columns):
                want, got = attributes.get(column), row.get(column)
                if not _same(want, got):
                    report.mismatched.append(Mismatch(rid, column, want, got))
        for rid in sorted(rows.keys() - expected.keys()):
            report.unexpected.append(rid)
            if (entity, rid) in truth.deleted:
                report.resurrected.append(rid)
    return ConvergenceReport(reports)


# --------------------------------------------------------------------------------- bench stream
_BENCH_CYCLE = ("text", "int", "float", "bool")


def bench_attribute_names(attributes: int) -> list[tuple[str, str]]:
    """``(name, kind)`` of the bench entity's attributes.

    ``name`` (text, never null) first, ``primarycontactid`` (the lookup) fifth, the others cycling
    through text, integer, double and boolean.
    """
    names: list[tuple[str, str]] = []
    others = 0
    for i in range(attributes):
        if i == 0:
            names.append(("name", "text"))
        elif i == 4:
            names.append(("primarycontactid", "lookup"))
        else:
            kind = _BENCH_CYCLE[others % len(_BENCH_CYCLE)]
            others += 1
            names.append((f"new_{kind}{i:02d}", kind))
    return names


def _bench_value(kind: str, rng: random.Random, contacts: list[str], required: bool) -> object:
    if not required and rng.random() < 0.1:
        return None
    if kind == "text":
        return " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 6)))
    if kind == "int":
        return rng.randint(-1000, 10_000_000)
    if kind == "float":
        return round(rng.uniform(-1e6, 1e7), 2)
    if kind == "bool":
        return rng.random() < 0.5
    return lookup(rng.choice(contacts), "contact")


def bench_lines(
    notifications: int = 200_000,
    attributes: int = 20,
    seed: int = 11,
    *,
    entity: str = "account",
    records: int | None = None,
    duplicate_rate: float = 0.05,
    delete_rate: float = 0.03,
    envelope_rate: float = 0.05,
    envelope_max: int = 10,
    reorder_window: int = 16,
    templates: int = 2048,
) -> Iterator[str]:
    """Message bodies with exactly ``notifications`` notifications of one entity.

    An initial sync (a create per record: ``notifications // 5`` records by default), then updates
    skewed to hot records, ``delete_rate`` deletes (and some re-creations), ``duplicate_rate``
    duplicates, local reordering within ``reorder_window``, and ``envelope_rate`` batch envelopes.
    Attribute states are ``templates`` pre-serialized JSON objects, so a body costs a string
    format; memory is bounded by the record ids, the templates and the small buffers.
    """
    if notifications < 0 or attributes < 0:
        raise ValueError("notifications and attributes must not be negative")
    rng = random.Random(seed)

    def guid() -> str:
        return str(uuid.UUID(int=rng.getrandbits(128), version=4))

    organization = guid()
    count = records if records is not None else max(1, notifications // 5)
    ids = [guid() for _ in range(count)]
    contacts = [guid() for _ in range(256)]
    schema = bench_attribute_names(attributes)
    pool = [
        json.dumps(
            {name: _bench_value(kind, rng, contacts, i == 0) for i, (name, kind) in enumerate(schema)},
            **_DUMPS_COMPACT,  # type: ignore[arg-type]
        )
        for _ in range(templates)
    ]
    head = (
        '{"schemaVersion":1,"organizationId":"' + organization + '","entity":"' + entity + '","recordId":"%s",'
        '"changeType":"%s","version":%d,"changedOn":"%s"'
    )
    upsert = head + ',"attributes":%s}'
    delete = head + "}"
    epoch = START.timestamp()

    def when(version: int) -> str:
        moment = datetime.fromtimestamp(epoch + version * 0.01, UTC)
        return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")

    def source() -> Iterator[str]:
        version = 1
        for rid in ids:
            version += 1
            yield upsert % (rid, "create", version, when(version), rng.choice(pool))
        alive = bytearray(b"\x01") * count
        dead: list[int] = []
        while True:
            version += 1
            r = rng.random()
            if r < delete_rate:
                i = rng.randrange(count)
                if alive[i]:
                    alive[i] = 0
                    dead.append(i)
                    yield delete % (ids[i], "delete", version, when(version))
                    continue
            if dead and (r < delete_rate * 1.3 or len(dead) == count):
                i = dead.pop(rng.randrange(len(dead)))  # a re-creation with a newer version
                alive[i] = 1
                yield upsert % (ids[i], "create", version, when(version), rng.choice(pool))
                continue
            i = int(count * rng.random() ** 4)
            while not alive[i]:
                i = (i + 1) % count
            yield upsert % (ids[i], "update", version, when(version), rng.choice(pool))

    # At-least-once transport, counted so the total is exactly `notifications`.
    planned = 0
    emitted = 0
    window = max(1, reorder_window)
    buffer: list[tuple[float, int, str]] = []  # local reordering, as in _reorder
    pending: list[tuple[int, int, str]] = []
    group: list[str] = []
    target = 1
    notes = source()

    def body(note: str) -> Iterator[str]:
        nonlocal group, target
        if not group:
            target = rng.randint(2, envelope_max) if envelope_max >= 2 and rng.random() < envelope_rate else 1
        group.append(note)
        if len(group) >= target:
            yield group[0] if target == 1 else "[" + ",".join(group) + "]"
            group = []

    def out(note: str) -> Iterator[str]:
        nonlocal emitted
        yield from body(note)
        emitted += 1
        while pending and pending[0][0] <= emitted:
            yield from body(heapq.heappop(pending)[2])
            emitted += 1

    while planned < notifications:
        note = next(notes)
        heapq.heappush(buffer, (planned + rng.random() * window, planned, note))
        planned += 1
        if planned < notifications and rng.random() < duplicate_rate:
            delay = rng.randint(1, 50) if rng.random() < 0.8 else rng.randint(500, 20_000)
            heapq.heappush(pending, (emitted + delay, planned, note))
            planned += 1
        while buffer and buffer[0][0] <= planned:
            yield from out(heapq.heappop(buffer)[2])
    while buffer:
        yield from out(heapq.heappop(buffer)[2])
    while pending:
        yield from body(heapq.heappop(pending)[2])
        emitted += 1
    if group:
        yield "[" + ",".join(group) + "]"


def write_bench_file(path: Path, notifications: int = 200_000, attributes: int = 20, seed: int = 11) -> int:
    """Write :func:`bench_lines` to a JSON Lines file (one message body a line); return the line count."""
    lines = 0
    with path.open("w", encoding="utf-8", newline="\n") as fh:
        for line in bench_lines(notifications, attributes, seed):
            fh.write(line)
            fh.write("\n")
            lines += 1
    return lines
