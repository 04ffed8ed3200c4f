"""A seeded, deterministic organization and seeded random change histories.

:func:`populate` fills a fresh :class:`DataverseState`: users, a team, currencies, then ``records``
accounts, about twice as many contacts, as many opportunities, and account-contact N:N links, with
unicode strings, nulls, option sets, a multi-select, money, decimals, doubles, dates, DateOnly
columns, booleans and lookups (simple, polymorphic customer, owner user/team, self-referencing).
No push messages are emitted for it (it is the organization as it was before anyone looked).

:func:`random_changes` makes live changes: updates, creates, deletes, re-creations with the same
id, associations and disassociations, all through the state's public write methods.
"""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from shared.tools.dataverse_sim.schema import ACCOUNT_CONTACT, CHANNELS, CUSTOMER_TYPE, INDUSTRY
from shared.tools.dataverse_sim.state import DataverseState, SteppingClock, Values
from shared.tools.dataverse_sim.values import Ref, new_guid

GENERATED_START = datetime(2026, 1, 5, 8, 0, 0, tzinfo=UTC)

COMPANY = (
    "Contoso", "Fabrikam", "Société Générale", "Müller GmbH", "東京商事", "Ærø Fisk", "Škoda Partners",
    "O'Brien & Sons", "Café Olé", "Łódź Logistics", "São Paulo Comércio", "Zürich Rück", "Αθηνά Εμπορική",
    "Москва Трейд", "مجموعة الخليج", "서울 무역", "Adventure Works", "Northwind Traders", "Tailspin Toys",
    'The "Best" Widgets; Ltd', "Robert'); DROP TABLE account;--", "Nguyễn Trading", "Coho Winery 🍷",
)
CITIES = ("Paris", "München", "東京", "São Paulo", "Zürich", "Kraków", "Reykjavík", "Seattle", "İstanbul", "Århus")
FIRST = ("Anna", "José", "Zoë", "Łukasz", "Søren", "Chloé", "太郎", "Ólafur", "D'Arcy", "Priya", "Siobhán", "Wei")
LAST = ("Müller", "García", "Nakamura", "O'Neil", "Ødegaard", "Smith", "Dubois", "山田", "Nguyễn", "van der Berg")
TOPICS = ("licences", "support renewal", "Rollout Phase 2", "Wartungsvertrag", "保守契約", "hardware refresh")
STEPS = ("1-Qualify", "2-Develop", "3-Propose", "4-Close")
CURRENCIES = (("US Dollar", "USD", "$", Decimal("1.0000000000")), ("Euro", "EUR", "€", Decimal("0.9200000000")),
              ("Japanese Yen", "JPY", "¥", Decimal("150.2500000000")))


def _maybe(rng: random.Random, value: Any, p_null: float = 0.15) -> Any:
    return None if rng.random() < p_null else value


def _money(rng: random.Random, high: int) -> Decimal:
    return Decimal(rng.randint(0, high * 100)) / 100


def _account_values(rng: random.Random, state: DataverseState, n: int) -> Values:
    return {
        "name": f"{rng.choice(COMPANY)} {n}",
        "accountnumber": _maybe(rng, f"AC-{rng.randint(0, 999999):06d}"),
        "telephone1": _maybe(rng, f"+{rng.randint(1, 99)} {rng.randint(100, 999)} {rng.randint(1000, 9999)}"),
        "emailaddress1": _maybe(rng, f"info{n}@example.com"),
        "address1_city": _maybe(rng, rng.choice(CITIES)),
        "description": _maybe(rng, "Zeile 1\nLigne 2 — «quoted» \\ backslash\ttab ✨", 0.6),
        "industrycode": _maybe(rng, rng.choice(INDUSTRY.options).value),
        "customertypecode": _maybe(rng, rng.choice(CUSTOMER_TYPE.options).value),
        "des_channels": _maybe(rng, sorted(rng.sample([o.value for o in CHANNELS.options], rng.randint(1, 3))), 0.4),
        "numberofemployees": _maybe(rng, rng.randint(1, 250_000)),
        "revenue": _maybe(rng, _money(rng, 50_000_000)),
        "creditlimit": _maybe(rng, _money(rng, 100_000)),
        "creditonhold": _maybe(rng, rng.random() < 0.2),
        "des_score": _maybe(rng, round(rng.uniform(0, 100), 2)),
        "lastusedincampaign": _maybe(rng, GENERATED_START - timedelta(seconds=rng.randint(0, 3 * 365 * 86400)), 0.5),
        "des_founded": _maybe(rng, date(1900, 1, 1) + timedelta(days=rng.randint(0, 45000)), 0.3),
        "transactioncurrencyid": Ref(rng.choice(state.ids("transactioncurrency")), "transactioncurrency"),
        "ownerid": _owner(rng, state),
    }


def _owner(rng: random.Random, state: DataverseState) -> Ref:
    if rng.random() < 0.2:
        return Ref(rng.choice(state.ids("team")), "team")
    return Ref(rng.choice(state.ids("systemuser")), "systemuser")


def _contact_values(rng: random.Random, state: DataverseState, parents: list[Ref]) -> Values:
    return {
        "firstname": _maybe(rng, rng.choice(FIRST), 0.1),
        "lastname": rng.choice(LAST),
        "emailaddress1": _maybe(rng, f"c{rng.randint(0, 10**6)}@example.org"),
        "jobtitle": _maybe(rng, rng.choice(("CEO", "Einkäufer", "Directrice financière", "営業部長"))),
        "birthdate": _maybe(rng, date(1950, 1, 1) + timedelta(days=rng.randint(0, 20000)), 0.4),
        "gendercode": _maybe(rng, rng.choice((1, 2)), 0.3),
        "preferredcontactmethodcode": _maybe(rng, rng.randint(1, 5)),
        "donotemail": rng.random() < 0.1,
        "annualincome": _maybe(rng, _money(rng, 500_000), 0.5),
        "parentcustomerid": _maybe(rng, rng.choice(parents), 0.2) if parents else None,
        "ownerid": _owner(rng, state),
    }


def _opportunity_values(rng: random.Random, state: DataverseState, accounts: list[str],
                        contacts: list[str]) -> Values:
    account = rng.choice(accounts) if accounts else None
    contact = rng.choice(contacts) if contacts and rng.random() < 0.6 else None
    customer = Ref(account, "account") if account and rng.random() < 0.7 else (
        Ref(contact, "contact") if contact else None)
    return {
        "name": f"{rng.choice(TOPICS)} {rng.randint(1, 9999)}",
        "stepname": _maybe(rng, rng.choice(STEPS)),
        "closeprobability": _maybe(rng, rng.randint(0, 100)),
        "estimatedvalue": _maybe(rng, _money(rng, 2_000_000)),
        "estimatedclosedate": _maybe(rng, GENERATED_START.date() + timedelta(days=rng.randint(-200, 400))),
        "opportunityratingcode": _maybe(rng, rng.randint(1, 3)),
        "parentaccountid": Ref(account, "account") if account else None,
        "parentcontactid": Ref(contact, "contact") if contact else None,
        "customerid": customer,
        "ownerid": _owner(rng, state),
    }


def populate(state: DataverseState, records: int) -> None:
    """Fill a fresh state with ``records`` accounts and what hangs off them (deterministic per seed)."""
    rng = random.Random(state.seed * 7919 + 1)
    saved_clock = state.clock
    state.clock = SteppingClock(GENERATED_START, timedelta(seconds=37))
    try:
        with state.lock:
            org = state.organization
            state.create("systemuser", {"fullname": "# DES sync (application user)",
                                        "domainname": "des-sync@simorg.onmicrosoft.com"}, org.user_id, notify=False)
            for name in ("Søren Kjær", "Amélie Laurent"):
                state.create("systemuser", {"fullname": name, "domainname": f"user{rng.randint(1, 999)}@simorg"},
                             new_guid(rng), notify=False)
            state.create("team", {"name": "Ventes Europe"}, new_guid(rng), notify=False)
            for i, (cname, iso, symbol, rate) in enumerate(CURRENCIES):
                rid = org.base_currency_id if i == 0 else new_guid(rng)
                state.create("transactioncurrency", {"currencyname": cname, "isocurrencycode": iso,
                                                     "currencysymbol": symbol, "exchangerate": rate}, rid,
                             notify=False)
            accounts: list[str] = []
            for n in range(records):
                values = _account_values(rng, state, n)
                if accounts and rng.random() < 0.25:
                    values["parentaccountid"] = Ref(rng.choice(accounts), "account")
                accounts.append(state.create("account", values, new_guid(rng), notify=False))
            contacts: list[str] = []
            account_parents = [Ref(a, "account") for a in accounts[:50]]
            for _ in range(records * 2):
                parents = account_parents + [Ref(c, "contact") for c in contacts[:5]]
                contacts.append(state.create("contact", _contact_values(rng, state, parents), new_guid(rng),
                                             notify=False))
            for account in accounts:
                if contacts and rng.random() < 0.5:
                    state.update("account", account, {"primarycontactid": Ref(rng.choice(contacts), "contact")},
                                 notify=False)
            for _ in range(records):
                rid = state.create("opportunity", _opportunity_values(rng, state, accounts, contacts), new_guid(rng),
                                   notify=False)
                if rng.random() < 0.3:
                    won = rng.random() < 0.5
                    state.update("opportunity", rid, {"statecode": 1 if won else 2, "statuscode": 3 if won else 4},
                                 notify=False)
            for _ in range(records):
                if accounts and contacts:
                    a, c = rng.choice(accounts), rng.choice(contacts)
                    if state.link_id(state.relationship(ACCOUNT_CONTACT.schema_name), a, c) is None:
                        state.associate(ACCOUNT_CONTACT.schema_name, a, c, notify=False)
    finally:
        state.clock = saved_clock


def random_update(rng: random.Random, state: DataverseState, entity: str) -> Values:
    """A few changed columns for an update of ``entity`` (no lookups to rows that may be gone)."""
    if entity == "account":
        full = _account_values(rng, state, rng.randint(0, 10**6))
    elif entity == "contact":
        full = _contact_values(rng, state, [])
        full.pop("parentcustomerid")
    else:
        full = _opportunity_values(rng, state, [], [])
        for key in ("parentaccountid", "parentcontactid", "customerid"):
            full.pop(key)
    keys = rng.sample(sorted(full), rng.randint(1, 3))
    return {k: full[k] for k in keys}


def random_changes(state: DataverseState, count: int, rng: random.Random | None = None) -> list[str]:
    """Make ``count`` live changes (each through the write API, so push messages follow). Returns a
    short description of each, e.g. ``"update account <id>"``."""
    rng = rng or random.Random(state.rng.random())
    done: list[str] = []
    deleted: list[tuple[str, str]] = []
    rel = ACCOUNT_CONTACT.schema_name
    while len(done) < count:
        entity = rng.choice(("account", "contact", "opportunity"))
        ids = state.ids(entity)
        roll = rng.random()
        if roll < 0.55 and ids:
            rid = rng.choice(ids)
            state.update(entity, rid, random_update(rng, state, entity))
            done.append(f"update {entity} {rid}")
        elif roll < 0.7:
            if entity == "account":
                values = _account_values(rng, state, rng.randint(0, 10**6))
            elif entity == "contact":
                values = _contact_values(rng, state, [Ref(a, "account") for a in state.ids("account")[:20]])
            else:
                values = _opportunity_values(rng, state, state.ids("account")[:20], state.ids("contact")[:20])
            rid = state.create(entity, values)
            done.append(f"create {entity} {rid}")
        elif roll < 0.8 and ids:
            rid = rng.choice(ids)
            state.delete(entity, rid)
            deleted.append((entity, rid))
            done.append(f"delete {entity} {rid}")
        elif roll < 0.85 and deleted:
            gone_entity, rid = deleted.pop(rng.randrange(len(deleted)))
            if state.get(gone_entity, rid) is None:
                values = {"name": f"re-created {rid[:8]}"} if gone_entity != "contact" else {"lastname": "Re-created"}
                state.create(gone_entity, values, rid)
                done.append(f"recreate {gone_entity} {rid}")
        elif roll < 0.95:
            accounts, contacts = state.ids("account"), state.ids("contact")
            if accounts and contacts:
                a, c = rng.choice(accounts), rng.choice(contacts)
                if state.link_id(state.relationship(rel), a, c) is None:
                    state.associate(rel, a, c)
                    done.append(f"associate {a} {c}")
        else:
            links = state.links(rel)
            if links:
                a, c = rng.choice(links)
                state.disassociate(rel, a, c)
                done.append(f"disassociate {a} {c}")
    return done
