"""Row-level rules of the landing contract: parse each value and reject the rows that break one.

Rows are named by position (1-based data row within their file, header excluded) and by the
offending value, never by the whole record, so logs and `meta.rejected_rows` stay free of
customer data beyond the value at fault.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mlpipeline.core import categories
from mlpipeline.core.config import pipeline_conf
from mlpipeline.warehouse.raw_tables import table_columns

# ISO 4217 active codes (2024) and ISO 3166-1 alpha-2 codes.
ISO_CURRENCIES = frozenset(
    """AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BRL BSD BTN
    BWP BYN BZD CAD CDF CHF CLP CNY COP CRC CUP CVE CZK DJF DKK DOP DZD EGP ERN ETB EUR FJD FKP
    GBP GEL GHS GIP GMD GNF GTQ GYD HKD HNL HTG HUF IDR ILS INR IQD IRR ISK JMD JOD JPY KES KGS
    KHR KMF KPW KRW KWD KYD KZT LAK LBP LKR LRD LSL LYD MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR
    MWK MXN MYR MZN NAD NGN NIO NOK NPR NZD OMR PAB PEN PGK PHP PKR PLN PYG QAR RON RSD RUB RWF
    SAR SBD SCR SDG SEK SGD SHP SLE SOS SRD SSP STN SVC SYP SZL THB TJS TMT TND TOP TRY TTD TWD
    TZS UAH UGX USD UYU UZS VES VND VUV WST XAF XCD XOF XPF YER ZAR ZMW ZWL""".split()
)
ISO_COUNTRIES = frozenset(
    """AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ
    BR BS BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM DO
    DZ EC EE EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU
    GW GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN KP KR KW
    KY KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT MU
    MV MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW
    PY QA RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ TC TD TF
    TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI VN VU WF WS YE YT ZA
    ZM ZW""".split()
)
# The categorical fields of each dataset; their declared lists live in dbt_project.yml.
CATEGORICAL = {"transactions": ("merchant_category", "channel"), "chargebacks": ("reason_code",)}

_TS_PATTERN = r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|\+00:00|\+0000)?$"
_AMOUNT_PATTERN = r"^-?\d{1,12}(\.\d{1,2})?$"
_VALUE_CHARS = 60


@dataclass
class RowRejects:
    rows: list[dict[str, Any]] = field(default_factory=list)

    @property
    def count(self) -> int:
        return len(self.rows)

    def extend(self, other: RowRejects) -> None:
        self.rows.extend(other.rows)


def arrow_schema(dataset: str) -> pa.Schema:
    """Arrow schema of `raw.<dataset>` rows as written to the revision's Parquet."""
    kinds = {
        "VARCHAR": pa.string(),
        "DECIMAL(18,2)": pa.decimal128(18, 2),
        "TIMESTAMP": pa.timestamp("us"),
        "DATE": pa.date32(),
        "BIGINT": pa.int64(),
    }
    return pa.schema([(n, kinds[k]) for n, k in table_columns(dataset).items()])


def _parse_ts(values: pa.ChunkedArray) -> tuple[pa.ChunkedArray, pa.ChunkedArray]:
    """ISO-8601 UTC strings to naive UTC timestamps; returns (timestamps, parsed_ok)."""
    ok = pc.match_substring_regex(values, _TS_PATTERN)
    cleaned = pc.replace_substring_regex(values, r"(Z|\+00:00|\+0000)$", "")
    cleaned = pc.replace_substring(cleaned, " ", "T")
    cleaned = pc.if_else(ok, cleaned, pa.scalar(None, pa.string()))
    parsed = pc.cast(
        pc.strptime(
            pc.utf8_slice_codeunits(cleaned, 0, 19), "%Y-%m-%dT%H:%M:%S", "us", error_is_null=True
        ),
        pa.timestamp("us"),
    )
    fraction = pc.utf8_slice_codeunits(cleaned, 20, 26)
    micros = pc.cast(
        pc.if_else(pc.equal(fraction, ""), "0", pc.utf8_rpad(fraction, 6, "0")), pa.int64()
    )
    parsed = pc.add(parsed, pc.cast(micros, pa.duration("us")))
    return parsed, pc.and_(ok, pc.is_valid(parsed))


class _Checker:
    """Collects, per row, the first rule it breaks."""

    def __init__(self, file: str, table: pa.Table) -> None:
        self.file = file
        self.table = table
        self.bad = pa.array([False] * table.num_rows, pa.bool_())
        self.rows: list[dict[str, Any]] = []

    def rule(self, name: str, failed: pa.Array | pa.ChunkedArray, column: str) -> None:
        if not self.table.num_rows:
            return  # a header-only file; pyarrow's indices_nonzero crashes on empty input
        failed = pc.fill_null(failed, True)
        new = pc.and_(failed, pc.invert(self.bad))
        indices = pc.indices_nonzero(new).to_pylist()
        values = self.table.column(column).take(indices).to_pylist() if indices else []
        for index, value in zip(indices, values, strict=True):
            shown = "" if value is None else str(value)[:_VALUE_CHARS]
            self.rows.append(
                {"file": self.file, "row": index + 1, "rule": name, "detail": f"{column}={shown!r}"}
            )
        self.bad = pc.or_(self.bad, failed)

    def required(self, columns: list[str]) -> None:
        for column in columns:
            values = pc.utf8_trim_whitespace(self.table.column(column))
            self.rule("required value", pc.equal(values, ""), column)


def check_rows(
    dataset: str, day: date, file: str, strings: pa.Table, seen_ids: list[pa.Array]
) -> tuple[pa.Table, RowRejects]:
    """Type the file's string columns, reject rows that break a rule; `seen_ids` spans the
    revision's files so a transaction id repeated in another file is a duplicate too."""
    checker = _Checker(file, strings)
    start = datetime.combine(day, time.min)
    end = start + timedelta(days=1)
    columns: dict[str, pa.ChunkedArray] = {}
    ts_column = "event_ts" if dataset == "transactions" else "reported_at"
    if dataset == "transactions":
        checker.required(["transaction_id", "customer_id", "merchant_id", "merchant_category"])
        amount_ok = pc.match_substring_regex(strings.column("amount"), _AMOUNT_PATTERN)
        checker.rule("amount is a number with at most 2 decimals", pc.invert(amount_ok), "amount")
        amount = pc.cast(pc.if_else(amount_ok, strings.column("amount"), "0"), pa.decimal128(18, 2))
        max_amount = Decimal(str(pipeline_conf()["ingest"]["max_amount_eur"]))
        checker.rule("amount > 0", pc.less_equal(amount, Decimal("0")), "amount")
        checker.rule(
            f"amount <= {max_amount} EUR", pc.greater(amount, pa.scalar(max_amount)), "amount"
        )
        columns["amount"] = amount
        checker.rule(
            "currency is an ISO 4217 code",
            pc.invert(pc.is_in(strings.column("currency"), pa.array(sorted(ISO_CURRENCIES)))),
            "currency",
        )
        checker.rule(
            "country is an ISO 3166 alpha-2 code",
            pc.invert(pc.is_in(strings.column("country"), pa.array(sorted(ISO_COUNTRIES)))),
            "country",
        )
    else:
        checker.required(["transaction_id", "reason_code"])
    for field_name in CATEGORICAL[dataset]:
        _categorical(checker, categories.declared(field_name), strings.column(field_name))
    parsed, ts_ok = _parse_ts(strings.column(ts_column))
    checker.rule(f"{ts_column} is ISO-8601 UTC", pc.invert(ts_ok), ts_column)
    in_day = pc.and_(
        pc.greater_equal(parsed, pa.scalar(start, pa.timestamp("us"))),
        pc.less(parsed, pa.scalar(end, pa.timestamp("us"))),
    )
    checker.rule(f"{ts_column} inside day {day}", pc.invert(in_day), ts_column)
    columns[ts_column] = parsed
    if dataset == "transactions":
        _duplicates(checker, strings.column("transaction_id"), seen_ids)

    keep = pc.invert(checker.bad)
    out = {}
    for name, kind in zip(arrow_schema(dataset).names, arrow_schema(dataset).types, strict=True):
        if name in columns:
            out[name] = columns[name]
        elif name in strings.column_names:
            out[name] = strings.column(name)
        elif name == "source_row":
            out[name] = pa.array(range(1, strings.num_rows + 1), pa.int64())
        else:
            continue
        out[name] = pc.cast(out[name], kind)
    typed = pa.table(out).filter(keep)
    return typed, RowRejects(checker.rows)


def _categorical(checker: _Checker, category: categories.Category, raw: pa.ChunkedArray) -> None:
    """A closed field's value must be declared; an open field's must only be well-formed (a new
    merchant category is kept, and reported by the raw suite and the dbt test)."""
    values = pc.utf8_lower(pc.utf8_trim_whitespace(raw))
    if category.closed:
        ok = pc.is_in(values, pa.array(category.values))
    else:
        ok = pc.match_substring_regex(values, categories.WELL_FORMED)
    checker.rule(category.rule, pc.invert(ok), category.field)


def _duplicates(checker: _Checker, ids: pa.ChunkedArray, seen_ids: list[pa.Array]) -> None:
    """Keep the first occurrence of a transaction id in the revision, reject the others (also
    ids already seen in the revision's earlier files). Vectorised: a day has millions of rows."""
    n = len(ids)
    positions = pa.table({"id": ids, "position": pa.array(np.arange(n, dtype=np.int64))})
    firsts = positions.group_by("id", use_threads=False).aggregate([("position", "min")])
    repeated = np.ones(n, dtype=bool)
    repeated[firsts.column("position_min").to_numpy()] = False
    dup = pa.array(repeated)
    if seen_ids:
        earlier = pa.concat_arrays([a.cast(pa.string()) for a in seen_ids])
        dup = pc.or_(dup, pc.fill_null(pc.is_in(ids, value_set=earlier), False))
    seen_ids.append(ids.combine_chunks() if isinstance(ids, pa.ChunkedArray) else ids)
    checker.rule("transaction_id unique in the batch", dup, "transaction_id")
