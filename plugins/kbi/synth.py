"""Synthetic KBI source data: a seeded, reproducible stand-in for the agency's ``kbi_dossier`` table.

``generate`` builds the base table behind the view ``kbi_inburgeraar`` (interfaces.md §1) with
what the pipeline must leave out as normal data (P1, P2: BIS numbers, the waiting register, the
deceased, residence unknown or in Brussels, the other target groups) and, when asked, a small
share of defects that the quality checks must catch (P11). Everything is vectorised with numpy
and pyarrow so that a million rows take seconds.

The national numbers are structurally valid and can coincide with real people's numbers. Like
the names, they never leave this module except into the database: the CLI and ``describe`` give
counts only (P12).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from kbi import reference, sqlfiles

if TYPE_CHECKING:
    from psycopg2.extensions import connection as PgConnection
    from psycopg2.sql import Composed

DEFAULT_SEED = 2026
DEFAULT_REFERENCE_DATE = date(2026, 1, 15)

DOELGROEPEN = ("inburgeraar", "anderstalige", "minderjarige_nieuwkomer", "anderstalige_kleuter")
_DOELGROEP_P = (0.70, 0.15, 0.09, 0.06)

SCHEMA = pa.schema(
    [
        pa.field("dossier_id", pa.int64(), nullable=False),
        pa.field("insz", pa.string()),
        pa.field("doelgroep", pa.string(), nullable=False),
        pa.field("familienaam", pa.string()),
        pa.field("voornamen", pa.string()),
        pa.field("geboortedatum", pa.date32()),
        pa.field("nationaliteit", pa.string()),
        pa.field("adres", pa.string()),
        pa.field("nis_code_hoofdverblijf", pa.string()),
        pa.field("ingeschreven_rijksregister", pa.bool_(), nullable=False),
        pa.field("contract_ondertekend_op", pa.date32()),
        pa.field("attest_behaald_op", pa.date32()),
        pa.field("overleden_op", pa.date32()),
        pa.field("gewijzigd_op", pa.timestamp("us"), nullable=False),
    ]
)

# Normal data the pipeline must exclude (P1): rate per row. At 1,000 rows or more each kind
# occurs at least once, so a demo-sized table always exercises every rule.
_EXCLUSION_RATES = {
    "bis_not_registered": 0.01,
    "waiting_register": 0.01,
    "deceased": 0.005,
    "deceased_after_reference": 0.001,
    "no_residence": 0.01,
}
# Defects (P11), only with defects=True, only on rows that would otherwise be delivered, so each
# one reaches the checks. Together about 0.3 % of rows: far under the 1 % blocking budget.
DEFECT_RATES = {
    "duplicate_insz": 0.0005,  # pairs: the second row repeats the first's number
    "invalid_checksum": 0.0005,
    "bis_registered": 0.0003,
    "empty_name": 0.0003,
    "control_char_in_name": 0.0002,
    "unknown_nis": 0.0002,
    "future_date": 0.0002,
    "impossible_birth_date": 0.0002,
    "malformed_insz": 0.0002,
}
DEFECT_KINDS = tuple(DEFECT_RATES)
# A pre-2025 NIS code of a merged municipality: the pipeline maps it and warns (not an error).
_OLD_NIS_RATE = 0.0005
# Legal names that a CSV reader or a spreadsheet would misread if not escaped (not an error).
_CSV_HOSTILE_RATE = 0.0002

_EPOCH = date(1970, 1, 1)
_DAY_US = 86_400 * 1_000_000
_METADATA_KEY = b"kbi.synth"


# --- names ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Origin:
    """Where a group of KBI's clients comes from: names and nationalities drawn together."""

    weight: float
    nationalities: tuple[tuple[str, float], ...]
    family: tuple[str, ...]
    male: tuple[str, ...]
    female: tuple[str, ...]
    # Share of double family names and how they are joined (Flemish "A-B", Iberian "A B").
    compound_rate: float = 0.0
    compound_sep: str = "-"


def _split(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(","))


def _origin(
    weight: float,
    nationalities: str,
    family: str,
    male: str,
    female: str,
    compound_rate: float = 0.0,
    compound_sep: str = "-",
) -> _Origin:
    """Names as one comma-separated string per list: compact to read and to review."""

    nats = tuple((name, float(share)) for name, share in (item.split(":") for item in _split(nationalities)))
    return _Origin(weight, nats, _split(family), _split(male), _split(female), compound_rate, compound_sep)


# Origins of KBI's clients (and Belgians among them), weights roughly after the agency's figures.
_ORIGINS: tuple[_Origin, ...] = (
    _origin(
        0.10,
        "Marokko:0.65, België:0.35",
        "El Amrani, El-Amrani, El Idrissi, Benali, Bouzid, El Ouardi, Aït Taleb, Bakkali, Boukhari, "
        "Azzouzi, Chaouki, El Khattabi, Haddou, Mansouri, Ouali, Ziani, Belhaj, El Moussaoui, Tahiri, "
        "Lamrani, Bennani, Essafi, Ben Salah, Aarab",
        "Mohamed, Youssef, Ayoub, Hamza, Mehdi, Bilal, Anas, Rachid, Karim, Soufiane, Ilias, Omar, "
        "Adil, Nordin, Abdelkader",
        "Fatima, Khadija, Salma, Imane, Nadia, Samira, Houda, Meryem, Zineb, Latifa, Hajar, Aïcha, "
        "Naïma, Malika",
    ),
    _origin(
        0.07,
        "Turkije:0.75, België:0.25",
        "Yılmaz, Kaya, Demir, Şahin, Çelik, Yıldız, Yıldırım, Öztürk, Aydın, Özdemir, Arslan, Doğan, "
        "Kılıç, Aslan, Çetin, Kara, Koç, Kurt, Özkan, Şimşek, Polat, Güneş, Erdoğan, Akbulut",
        "Mehmet, Mustafa, Ahmet, Ali, Hüseyin, Hasan, İbrahim, Murat, Emre, Burak, Yusuf, Ömer, Çağlar, Uğur",
        "Ayşe, Fatma, Emine, Hatice, Zeynep, Elif, Büşra, Gülşen, Özlem, Şeyma, Merve, İrem",
    ),
    _origin(
        0.10,
        "Syrië:0.7, Irak:0.15, Palestina:0.15",
        "Al-Hassan, Al-Ahmad, Haddad, Khalil, Abdel-Rahman, Al-Khatib, Shami, Darwish, Halabi, "
        "Al-Masri, Hamoud, Sabbagh, Kassab, Al Ali, Ibrahim, Abu Zaid, Al-Jabouri, Saleh",
        "Ahmad, Mohammad, Khaled, Abdulrahman, Omar, Ammar, Yazan, Rami, Firas, Tarek, Bashar, Mahmoud",
        "Rasha, Lina, Hiba, Nour, Rania, Reem, Yara, Dima, Layla, Ghada, Alaa",
    ),
    _origin(
        0.08,
        "Afghanistan:0.95, België:0.05",
        "Ahmadi, Rahimi, Hakimi, Popal, Sultani, Karimi, Noori, Hashimi, Safi, Stanikzai, Wardak, "
        "Azizi, Haidari, Mohammadi, Rezai",
        "Ahmad Shah, Mohammad, Abdul, Rahim, Farid, Jawad, Hamid, Naveed, Sayed, Zabihullah, Mustafa",
        "Fatima, Zahra, Maryam, Parwana, Nargis, Shabnam, Freshta, Mursal, Habiba",
    ),
    _origin(
        0.08,
        "Oekraïne:1",
        "Shevchenko, Kovalenko, Bondarenko, Tkachenko, Kravchenko, Melnyk, Boyko, Koval, Oliynyk, "
        "Lysenko, Moroz, Savchenko, Petrenko, Rudenko, Marchenko",
        "Oleksandr, Andriy, Serhiy, Dmytro, Mykola, Volodymyr, Yuriy, Taras, Bohdan, Ihor",
        "Olena, Oksana, Tetiana, Nataliia, Iryna, Yuliia, Kateryna, Anastasiia, Svitlana, Mariia",
    ),
    _origin(
        0.05,
        "Polen:0.95, België:0.05",
        "Nowak, Kowalski, Wiśniewski, Wójcik, Kowalczyk, Kamiński, Lewandowski, Zieliński, "
        "Szymański, Woźniak, Dąbrowski, Kozłowska, Jankowska, Mazur, Krawczyk",
        "Łukasz, Piotr, Krzysztof, Tomasz, Paweł, Michał, Grzegorz, Jakub, Wojciech, Marek",
        "Agnieszka, Małgorzata, Katarzyna, Joanna, Magdalena, Anna, Ewa, Dorota, Żaneta, Urszula",
    ),
    _origin(
        0.07,
        "Roemenië:0.85, Moldavië:0.15",
        "Popescu, Ionescu, Popa, Constantin, Stan, Dumitru, Stoica, Gheorghe, Munteanu, Rusu, Matei, "
        "Ciobanu, Lungu, Moldovan, Țurcanu, Ștefănescu",
        "Ștefan, Ion, Andrei, Mihai, Gheorghe, Constantin, Alexandru, Florin, Bogdan, Ionuț, Cătălin",
        "Maria, Elena, Ioana, Andreea, Mihaela, Cristina, Alexandra, Gabriela, Loredana, Roxana, Ștefania",
    ),
    _origin(
        0.05,
        "Eritrea:0.9, Ethiopië:0.1",
        "Tesfay, Gebremedhin, Tekle, Haile, Kidane, Berhane, Woldu, Ghebreyesus, Habte, Mebrahtu, "
        "Tesfamariam, Yohannes, Abraha, Ghirmay",
        "Yonas, Dawit, Filmon, Samuel, Mussie, Tesfalem, Biniam, Robel, Henok",
        "Helen, Selam, Senait, Yordanos, Saba, Mebrat, Rahwa, Winta, Feven, Luwam",
    ),
    _origin(
        0.03,
        "Somalië:1",
        "Mohamed, Ahmed, Hassan, Ali, Abdi, Farah, Warsame, Osman, Jama, Hussein, Abdullahi, Yusuf, "
        "Nur, Aden",
        "Abdirahman, Abdullahi, Mohamed, Ahmed, Hassan, Abdikarim, Mahad, Liban",
        "Hodan, Amina, Fadumo, Hawa, Sahra, Ifrah, Ayan, Hibo, Ubah",
    ),
    _origin(
        0.04,
        "Democratische Republiek Congo:0.75, België:0.15, Angola:0.1",
        "Mbuyi, Kabongo, Ilunga, Tshibangu, Mukendi, Kasongo, Lukusa, Nsimba, Mulumba, Kalala, "
        "Mbala, Ngalula, Mwamba, Nkulu, Makiese",
        "Jean-Pierre, Patrick, Christian, Dieudonné, Joseph, Trésor, Gloire, Héritier, Serge, Jean-Claude",
        "Grâce, Espérance, Béatrice, Chantal, Mireille, Nadège, Bénédicte, Rachel, Merveille, Marie-Claire",
    ),
    _origin(
        0.05,
        "Guinee:0.5, Senegal:0.3, Kameroen:0.2",
        "N'Diaye, Diallo, Bah, Barry, Sow, Camara, Touré, Sylla, Keïta, Cissé, N'Doye, Fofana, "
        "N'Guessan, Mbappé",
        "Mamadou, Ibrahima, Ousmane, Abdoulaye, Moussa, Alpha, Amadou, Souleymane",
        "Aminata, Fatoumata, Mariama, Aïssatou, Kadiatou, Hawa, Fanta, Ramatoulaye",
    ),
    _origin(
        0.04,
        "Brazilië:0.9, Portugal:0.1",
        "Silva, Santos, Oliveira, Souza, Pereira, Costa, Rodrigues, Almeida, Nascimento, Lima, "
        "Araújo, Fernandes, Carvalho, Gonçalves, da Silva, dos Santos",
        "João, José, Gabriel, Lucas, Mateus, Rafael, Thiago, Felipe, Vinícius, Caio",
        "Ana, Maria, Juliana, Fernanda, Camila, Letícia, Beatriz, Larissa, Luíza",
        compound_rate=0.4,
        compound_sep=" ",
    ),
    _origin(
        0.03,
        "Spanje:0.6, Colombia:0.2, Venezuela:0.2",
        "García, Martínez, López, Sánchez, Pérez, Gómez, Núñez, Muñoz, Fernández, Rodríguez, "
        "Jiménez, Díaz, de la Cruz",
        "José, Javier, Alejandro, Andrés, Íñigo, Sebastián, Jesús, Carlos",
        "María José, Lucía, Sofía, Valentina, Inés, Begoña, Ainhoa, Mónica",
        compound_rate=0.5,
        compound_sep=" ",
    ),
    _origin(
        0.05,
        "India:0.8, Pakistan:0.1, Nepal:0.1",
        "Sharma, Patel, Singh, Kumar, Gupta, Reddy, Nair, Iyer, Menon, Rao, Das, Chatterjee, Mehta, "
        "Joshi, Pillai",
        "Rahul, Arjun, Vikram, Rohan, Aditya, Sanjay, Rajesh, Amit, Karthik",
        "Priya, Ananya, Deepa, Kavya, Lakshmi, Pooja, Divya, Sneha, Meera",
    ),
    _origin(
        0.02,
        "Vietnam:0.9, China:0.1",
        "Nguyễn, Trần, Lê, Phạm, Hoàng, Huỳnh, Phan, Vũ, Võ, Đặng, Bùi, Đỗ, Hồ, Ngô, Dương",
        "Văn Minh, Anh, Đức, Huy, Tuấn, Quang, Khánh, Phúc, Long, Thắng",
        "Thị Lan, Hương, Linh, Ngọc, Thảo, Trang, Phương, Hà, Mai, Thu",
    ),
    _origin(
        0.02,
        "Ierland:0.4, Verenigd Koninkrijk:0.4, Verenigde Staten:0.2",
        "O'Connor, O'Brien, O'Sullivan, Murphy, Kelly, McCarthy, Smith, Jones, O'Neill, MacLeod",
        "Seán, Patrick, Liam, Conor, James, Oisín",
        "Siobhán, Aoife, Niamh, Emily, Sarah, Saoirse",
    ),
    _origin(
        0.06,
        "België:0.85, Nederland:0.15",
        "Peeters, Janssens, Maes, Jacobs, Mertens, Willems, Claes, Goossens, Wouters, De Smet, "
        "Van den Broeck, D'Hondt, Vermeulen, Van de Velde, De Clercq, Van Damme, Verstraete, "
        "Lambrechts, Van Acker, Hermans, Vandenberghe, De Backer, Van Dyck, Segers, D'Haese, "
        "Van der Linden",
        "Jan, Pieter, Bart, Tom, Wouter, Jef, Lucas, Arne, Seppe, Stijn, Joris",
        "Lotte, Zoë, Emma, Marie, Ine, Liesbeth, Els, An, Sofie, Fien, Noor",
        compound_rate=0.05,
        compound_sep="-",
    ),
    _origin(
        0.03,
        "België:0.8, Frankrijk:0.2",
        "Dubois, Lambert, Dupont, Martin, Simon, Laurent, Leclercq, Lejeune, Renard, Leroy, Lefèvre, "
        "François, Dumont, Collignon, Delvaux",
        "François, Jean, Philippe, Benoît, Cédric, Jérôme, Sébastien, Maxime, Thibault, Grégoire",
        "Chloé, Amélie, Céline, Mélanie, Hélène, Françoise, Geneviève, Élodie, Noémie, Léa",
    ),
)

_STREETS = _split(
    "Kerkstraat, Stationsstraat, Dorpsstraat, Molenstraat, Nieuwstraat, Schoolstraat, Beekstraat, "
    "Kapelstraat, Hoogstraat, Kasteelstraat, Veldstraat, Lindelaan, Bosstraat, Meersstraat, Kouter, "
    "Grote Markt, Brugstraat, Leopoldlaan, Koning Albertstraat, Sint-Jansplein, Processiestraat, "
    "Vaartstraat, Heirweg, Populierenlaan, Tiensesteenweg, Antwerpsesteenweg, Gentse Baan, "
    "Hof ter Linden"
)

# Values for the defect rows. Unknown NIS codes are in no reference list, old or new.
_UNKNOWN_NIS = ("99999", "00000", "12345")
_CONTROL_CHARS = ("\x07", "\n", "\r", "\x1b", "\x0b")
_EMPTY_NAMES: tuple[tuple[str, str | None], ...] = (
    ("familienaam", ""),
    ("familienaam", "   "),
    ("familienaam", None),
    ("voornamen", ""),
    ("voornamen", " "),
    ("voornamen", None),
)
# (month, day) in an otherwise valid number with a correct mod-97 check: 30/31 February and
# 31 April/June pass python-stdnum's lenient check, month 13 does not.
_IMPOSSIBLE_DATES = ((2, 30), (2, 31), (13, 12), (4, 31), (6, 31))


# --- small helpers ----------------------------------------------------------------------------


def _days(d: date) -> int:
    return (d - _EPOCH).days


def _count(rows: int, rate: float) -> int:
    """Rows of a kind: the rate, and at least one from 1,000 rows up."""
    n = round(rows * rate)
    return max(n, 1) if rows >= 1000 else n


def _pick(rng: np.random.Generator, eligible: np.ndarray, count: int, used: np.ndarray) -> np.ndarray:
    """``count`` distinct rows among the eligible ones not used yet; marks them used."""
    candidates = np.flatnonzero(eligible & ~used)
    count = min(count, candidates.size)
    chosen = np.sort(rng.choice(candidates, size=count, replace=False)) if count else candidates[:0]
    used[chosen] = True
    return chosen


def _flatten(groups: Sequence[Sequence[str]]) -> tuple[pa.Array, np.ndarray, np.ndarray]:
    """One arrow array of all names, plus where each group starts and how long it is."""
    lengths = np.array([len(g) for g in groups], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    return pa.array([name for g in groups for name in g], pa.string()), offsets, lengths


def _draw(
    rng: np.random.Generator, group: np.ndarray, offsets: np.ndarray, lengths: np.ndarray
) -> np.ndarray:
    """For each row, a uniform index into its group's slice of a flattened name list."""
    return offsets[group] + (rng.random(group.size) * lengths[group]).astype(np.int64)


def _patch(arr: pa.Array, idx: np.ndarray, values: Sequence[object]) -> pa.Array:
    """``arr`` with ``arr[idx[i]] = values[i]`` (idx distinct), without leaving arrow."""
    if len(idx) == 0:
        return arr
    order = np.argsort(idx)
    mask = np.zeros(len(arr), dtype=bool)
    mask[idx] = True
    replacements = pa.array([values[i] for i in order], type=arr.type)
    return pc.replace_with_mask(arr, pa.array(mask), replacements)


def _date_array(days: np.ndarray, valid: np.ndarray | None = None) -> pa.Array:
    mask = None if valid is None else ~valid
    return pa.array(days.astype(np.int32), pa.int32(), mask=mask).cast(pa.date32())


def _ymd(days: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    d = days.astype("datetime64[D]")
    months = d.astype("datetime64[M]")
    year = months.astype("datetime64[Y]").astype(np.int64) + 1970
    month = months.astype(np.int64) % 12 + 1
    day = (d - months.astype("datetime64[D]")).astype(np.int64) + 1
    return year, month, day


def _draw_serials(rng: np.random.Generator, female: np.ndarray) -> np.ndarray:
    # 001..997: odd for men, even for women.
    k = rng.integers(0, 498, size=female.size)
    return np.where(female, 2 * k + 2, 2 * k + 1).astype(np.int64)


def _stem(yy: np.ndarray, mm: np.ndarray, dd: np.ndarray, born_2000: np.ndarray) -> np.ndarray:
    """The first nine digits without the serial (times 1000), plus a century bit for uniqueness."""
    return ((yy * 100 + mm) * 100 + dd) * 1000 + born_2000 * 1_000_000_000


def _unique_serials(
    rng: np.random.Generator,
    stem: np.ndarray,
    serial: np.ndarray,
    female: np.ndarray,
    movable: np.ndarray | None = None,
) -> None:
    """Redraw serials in place until every number is unique; only ``movable`` rows change."""
    for _ in range(200):
        key = stem + serial
        order = np.argsort(key, kind="stable")
        same = key[order][1:] == key[order][:-1]
        if not same.any():
            return
        if movable is None:
            redraw = order[1:][same]
        else:
            members = order[np.concatenate([same, [False]]) | np.concatenate([[False], same])]
            redraw = members[movable[members]]
        serial[redraw] = _draw_serials(rng, female[redraw])
    raise RuntimeError("could not make the synthetic national numbers unique")


def _check_digits(first9: np.ndarray, born_2000: np.ndarray) -> np.ndarray:
    # Born in 2000 or later: the check is computed over '2' followed by the first nine digits.
    return 97 - (first9 + born_2000 * 2_000_000_000) % 97


def _future_anchor(reference_date: date, today: date) -> date:
    """Dates after this are defects: later than the real today and than the reference window."""
    return max(today, reference_date + timedelta(days=60))


# --- generation -------------------------------------------------------------------------------


def generate(
    rows: int,
    seed: int = DEFAULT_SEED,
    reference_date: date = DEFAULT_REFERENCE_DATE,
    defects: bool = True,
    *,
    today: date | None = None,
) -> pa.Table:
    """A synthetic ``kbi_dossier`` table of exactly ``rows`` rows, the same for the same arguments.

    ``today`` (default: the real date) only places the future-dated defects after it; pass it to
    make a table with defects reproducible across days. The base data is drawn from its own random
    stream, so a table with defects differs from the clean one only in the defect rows.
    """
    if rows < 1:
        raise ValueError("rows must be at least 1")
    today = today or date.today()
    base_seq, defect_seq = np.random.SeedSequence(seed).spawn(2)
    rng = np.random.default_rng(base_seq)
    n = rows
    ref = _days(reference_date)

    # Who: target group, sex, age.
    group = rng.choice(len(DOELGROEPEN), size=n, p=_DOELGROEP_P)
    female = rng.random(n) < 0.5
    adult = group <= 1
    age = np.empty(n)
    # Adults from 18, skewed young (mean ~32): about a third born in 2000 or later.
    adult_age = 18 + rng.gamma(2.0, 7.0, size=int(adult.sum()))
    # Redraw the long tail rather than clip it: a clipped age piles up on one birth date, more
    # people than a day has serial numbers.
    old_age = adult_age > 80
    adult_age[old_age] = rng.uniform(18, 80, size=int(old_age.sum()))
    age[adult] = adult_age
    minor = group == 2
    age[minor] = rng.uniform(12, 17.9, size=int(minor.sum()))
    toddler = group == 3
    age[toddler] = rng.uniform(2.5, 6, size=int(toddler.sum()))
    birth = ref - (age * 365.25).astype(np.int64) - 1

    # Names and nationality follow an origin.
    weights = np.array([o.weight for o in _ORIGINS])
    origin = rng.choice(len(_ORIGINS), size=n, p=weights / weights.sum())
    fam_all, fam_off, fam_len = _flatten([o.family for o in _ORIGINS])
    familienaam = fam_all.take(pa.array(_draw(rng, origin, fam_off, fam_len)))
    compound_rate = np.array([o.compound_rate for o in _ORIGINS])[origin]
    compound = rng.random(n) < compound_rate
    second = _draw(rng, origin, fam_off, fam_len)
    seps = pa.array([o.compound_sep for o in _ORIGINS]).take(pa.array(origin))
    familienaam = pc.binary_join_element_wise(
        familienaam, fam_all.take(pa.array(second, mask=~compound)), seps, null_handling="skip"
    )
    giv_all, giv_off, giv_len = _flatten([names for o in _ORIGINS for names in (o.male, o.female)])
    giv_group = origin * 2 + female
    how_many = rng.choice(3, size=n, p=(0.6, 0.3, 0.1)) + 1
    given = [
        giv_all.take(pa.array(_draw(rng, giv_group, giv_off, giv_len), mask=how_many <= k)) for k in range(3)
    ]
    voornamen = pc.binary_join_element_wise(*given, " ", null_handling="skip")
    nat_idx = np.empty(n, dtype=np.int64)
    nat_names: list[str] = []
    u = rng.random(n)
    for i, o in enumerate(_ORIGINS):
        rows_i = origin == i
        cum = np.cumsum([p for _, p in o.nationalities])
        picked = np.minimum(np.searchsorted(cum / cum[-1], u[rows_i]), len(cum) - 1)
        nat_idx[rows_i] = len(nat_names) + picked
        nat_names.extend(name for name, _ in o.nationalities)
    nationaliteit = pa.array(nat_names).take(pa.array(nat_idx))

    # Residence by the estimated volume per municipality (Brussels ~13 %).
    vw = reference.volume_weights()
    codes = np.array(sorted(vw))
    p = np.array([vw[c] for c in codes])
    nis_idx = rng.choice(codes.size, size=n, p=p / p.sum())
    munis = reference.municipalities()
    flemish_code = np.array([munis[c].is_flemish for c in codes])

    # Normal exclusions (P1), disjoint so that each row has at most one reason.
    used = np.zeros(n, dtype=bool)
    everyone = np.ones(n, dtype=bool)
    bis_nr = _pick(rng, everyone, _count(n, _EXCLUSION_RATES["bis_not_registered"]), used)
    waiting = _pick(rng, everyone, _count(n, _EXCLUSION_RATES["waiting_register"]), used)
    dead = _pick(rng, adult, _count(n, _EXCLUSION_RATES["deceased"]), used)
    dies_later = _pick(rng, adult, _count(n, _EXCLUSION_RATES["deceased_after_reference"]), used)
    no_home = _pick(rng, everyone, _count(n, _EXCLUSION_RATES["no_residence"]), used)
    registered = np.ones(n, dtype=bool)
    registered[bis_nr] = False
    registered[waiting] = False
    # BIS month offset: +40 when the sex is known, +20 when not.
    month_offset = np.zeros(n, dtype=np.int64)
    month_offset[bis_nr] = np.where(rng.random(bis_nr.size) < 0.8, 40, 20)
    death = np.full(n, ref, dtype=np.int64)
    has_death = np.zeros(n, dtype=bool)
    has_death[dead] = True
    death[dead] = ref - rng.integers(1, 5 * 365, size=dead.size)
    has_death[dies_later] = True
    # Dates after the reference date, but never after today: a run on the reference date itself
    # (the demo) must not see a future date in healthy data.
    late = max(0, min(60, (today - reference_date).days))
    if late:
        death[dies_later] = ref + rng.integers(1, late + 1, size=dies_later.size)
    else:
        has_death[dies_later] = False
    nis_idx[no_home] = -1

    # Contract and attest (inburgeraars only): ~85 % and ~45 %, within the last ~8 years, a few
    # percent in the 60 days after the reference date so that "ja only when <= d" is tested.
    inburgeraar = group == 0
    has_contract = inburgeraar & (rng.random(n) < 0.85)
    has_attest = has_contract & (rng.random(n) < 0.45 / 0.85)
    contract = ref - rng.integers(0, 8 * 365, size=n)
    contract = np.minimum(np.maximum(contract, birth + 6575), ref)
    late_contract = has_contract & (rng.random(n) < (0.03 if late else 0.0))
    contract[late_contract] = ref + rng.integers(1, late + 1, size=int(late_contract.sum()))
    attest_end = np.maximum(np.minimum(contract + 730, ref + late), contract)
    attest = contract + (rng.random(n) * (attest_end - contract + 1)).astype(np.int64)
    late_attest = has_attest & ~late_contract & (rng.random(n) < (0.02 if late else 0.0))
    start = np.maximum(contract, ref + 1)
    attest[late_attest] = (start + rng.random(n) * (ref + late + 1 - start)).astype(np.int64)[late_attest]
    attest = np.maximum(attest, contract)
    # Nothing signed or obtained after a death.
    died = has_death & (death <= ref)
    contract = np.where(died, np.minimum(contract, death - 1), contract)
    attest = np.where(died, np.maximum(np.minimum(attest, death - 1), contract), attest)
    contract = np.where(has_contract, contract, 0)
    attest = np.where(has_attest, attest, 0)

    # Last change: after the last event known on the reference date, before that date.
    last = np.maximum(ref - 8 * 365, birth)
    last = np.maximum(last, np.where(has_contract & (contract <= ref), contract, 0))
    last = np.maximum(last, np.where(has_attest & (attest <= ref), attest, 0))
    last = np.maximum(last, np.where(has_death & (death < ref), death, 0))
    last = np.minimum(last, ref - 1)
    span_us = (ref - last) * _DAY_US - 1_000_000
    changed_us = last * _DAY_US + (rng.random(n) * span_us).astype(np.int64) // 1_000_000 * 1_000_000

    street = pa.array(_STREETS).take(pa.array(rng.integers(0, len(_STREETS), size=n)))
    number = pa.array(rng.integers(1, 250, size=n)).cast(pa.string())
    bus = rng.integers(1, 30, size=n)
    adres = pc.binary_join_element_wise(street, number, " ")
    adres = pc.binary_join_element_wise(
        adres, pa.array(bus, mask=rng.random(n) >= 0.15).cast(pa.string()), " bus ", null_handling="skip"
    )

    # National numbers: YYMMDD, serial, mod-97 check; unique (collisions get a new serial).
    year, month, day = _ymd(birth)
    born_2000 = (year >= 2000).astype(np.int64)
    yy, mm, dd = year % 100, month + month_offset, day
    serial = _draw_serials(rng, female)
    _unique_serials(rng, _stem(yy, mm, dd, born_2000), serial, female)

    nis_valid = nis_idx >= 0
    deliverable = (
        inburgeraar
        & registered
        & (month_offset == 0)
        & ~(has_death & (death <= ref))
        & nis_valid
        & flemish_code[np.maximum(nis_idx, 0)]
    )
    hostile = _pick(rng, deliverable, _count(n, _CSV_HOSTILE_RATE), used)
    hostile_second = fam_all.take(pa.array(rng.integers(0, len(fam_all), size=hostile.size)))

    nis = pa.array(codes).take(pa.array(nis_idx, mask=~nis_valid))
    check = _check_digits(_stem(yy, mm, dd, 0) + serial, born_2000)
    gen = _Columns(
        familienaam=familienaam,
        voornamen=voornamen,
        nis=nis,
        yy=yy,
        mm=mm,
        dd=dd,
        born_2000=born_2000,
        serial=serial,
        check=check,
        female=female,
        birth=birth,
        contract=contract,
        attest=attest,
        has_contract=has_contract,
        has_attest=has_attest,
    )
    gen.familienaam, gen.voornamen = _csv_hostile(
        gen.familienaam, gen.voornamen, hostile, hostile_second.to_pylist()
    )

    future_after = _future_anchor(reference_date, today)
    if defects:
        _inject_defects(np.random.default_rng(defect_seq), gen, deliverable, used, ref, future_after)

    insz_int = (_stem(gen.yy, gen.mm, gen.dd, 0) + gen.serial) * 100 + gen.check
    insz = pc.utf8_lpad(pa.array(insz_int).cast(pa.string()), 11, "0")
    if gen.malformed is not None:
        insz = _patch(insz, gen.malformed, _malformed(insz.take(pa.array(gen.malformed)).to_pylist()))
    if gen.duplicate_of is not None:
        src, dst = gen.duplicate_of
        insz = _patch(insz, dst, insz.take(pa.array(src)).to_pylist())

    table = pa.Table.from_arrays(
        [
            pa.array(np.arange(1, n + 1, dtype=np.int64)),
            insz,
            pa.array(DOELGROEPEN).take(pa.array(group)),
            gen.familienaam,
            gen.voornamen,
            _date_array(gen.birth),
            nationaliteit,
            adres,
            gen.nis,
            pa.array(registered),
            _date_array(gen.contract, gen.has_contract),
            _date_array(gen.attest, gen.has_attest),
            _date_array(death, has_death),
            pa.array(changed_us.astype("datetime64[us]")),
        ],
        schema=SCHEMA,
    )
    meta = {
        "seed": seed,
        "reference_date": reference_date.isoformat(),
        "future_after": future_after.isoformat(),
        "defects": defects,
    }
    return table.replace_schema_metadata({_METADATA_KEY: json.dumps(meta).encode()})


@dataclass
class _Columns:
    """The columns that defects change, passed between the generation steps."""

    familienaam: pa.Array
    voornamen: pa.Array
    nis: pa.Array
    yy: np.ndarray
    mm: np.ndarray
    dd: np.ndarray
    born_2000: np.ndarray
    serial: np.ndarray
    check: np.ndarray
    female: np.ndarray
    birth: np.ndarray
    contract: np.ndarray
    attest: np.ndarray
    has_contract: np.ndarray
    has_attest: np.ndarray
    malformed: np.ndarray | None = None
    duplicate_of: tuple[np.ndarray, np.ndarray] | None = None


def _csv_hostile(
    familienaam: pa.Array, voornamen: pa.Array, rows: np.ndarray, second: list[str]
) -> tuple[pa.Array, pa.Array]:
    """Legal names that start like a formula or hold a separator or quote (escaped on output)."""
    fam = familienaam.take(pa.array(rows)).to_pylist()
    given = voornamen.take(pa.array(rows)).to_pylist()
    fam_rows, fam_vals, giv_rows, giv_vals = [], [], [], []
    for i, (row, f, g) in enumerate(zip(rows, fam, given, strict=True)):
        variant = i % 7
        if variant < 4:  # a data-entry slip before the name
            fam_rows.append(row)
            fam_vals.append("-=+@"[variant] + f)
        elif variant == 4:  # ';' typed for a hyphen in a double name
            fam_rows.append(row)
            fam_vals.append(f"{f};{second[i]}")
        elif variant == 5:  # a nickname in quotes
            giv_rows.append(row)
            giv_vals.append(f'{g} "{g.split()[0][:3]}"')
        else:  # '"' typed for an apostrophe
            fam_rows.append(row)
            fam_vals.append(f.replace("'", '"') if "'" in f else f'{f}"')
    return (
        _patch(familienaam, np.array(fam_rows, dtype=np.int64), fam_vals),
        _patch(voornamen, np.array(giv_rows, dtype=np.int64), giv_vals),
    )


def _malformed(values: list[str]) -> list[str]:
    """Numbers as a careless hand or a lost leading digit leaves them."""
    out = []
    for i, v in enumerate(values):
        variant = i % 5
        if variant == 0:
            out.append(v[:-1])  # 10 digits
        elif variant == 1:
            out.append(v[:4] + "O" + v[5:])  # letter O for a zero-like digit
        elif variant == 2:
            out.append("")
        elif variant == 3:
            out.append(f"{v[:2]}.{v[2:4]}.{v[4:6]}-{v[6:9]}.{v[9:]}")  # formatted, not digits only
        else:
            out.append(v + v[-1])  # 12 digits
    return out


def _inject_defects(
    rng: np.random.Generator,
    gen: _Columns,
    deliverable: np.ndarray,
    used: np.ndarray,
    ref: int,
    future_after: date,
) -> None:
    """Each defect kind on its own rows among those that would otherwise be delivered."""
    n = deliverable.size
    used = used.copy()
    pick = {kind: _count(n, rate) for kind, rate in DEFECT_RATES.items()}

    pairs = _pick(rng, deliverable, 2 * pick["duplicate_insz"], used)
    pairs = rng.permutation(pairs)
    src, dst = np.sort(pairs[: pairs.size // 2]), np.sort(pairs[pairs.size // 2 :])
    bad_check = _pick(rng, deliverable, pick["invalid_checksum"], used)
    bis_reg = _pick(rng, deliverable, pick["bis_registered"], used)
    empty = _pick(rng, deliverable, pick["empty_name"], used)
    ctrl = _pick(rng, deliverable, pick["control_char_in_name"], used)
    unknown = _pick(rng, deliverable, pick["unknown_nis"], used)
    future = _pick(rng, deliverable, pick["future_date"], used)
    impossible = _pick(rng, deliverable, pick["impossible_birth_date"], used)
    malformed = _pick(rng, deliverable, pick["malformed_insz"], used)
    old_nis = _pick(rng, deliverable, _count(n, _OLD_NIS_RATE), used)

    # Numbers whose digits change must stay unique: only these rows may get a new serial.
    gen.mm[bis_reg] += 40
    for i, row in enumerate(impossible):
        gen.mm[row], gen.dd[row] = _IMPOSSIBLE_DATES[i % len(_IMPOSSIBLE_DATES)]
    movable = np.zeros(n, dtype=bool)
    movable[bis_reg] = True
    movable[impossible] = True
    _unique_serials(rng, _stem(gen.yy, gen.mm, gen.dd, gen.born_2000), gen.serial, gen.female, movable)
    first9 = _stem(gen.yy, gen.mm, gen.dd, 0) + gen.serial
    gen.check = _check_digits(first9, gen.born_2000)

    # A wrong check that matches neither century's rule.
    other = _check_digits(first9[bad_check], 1 - gen.born_2000[bad_check])
    wrong = rng.integers(1, 98, size=bad_check.size)
    for _ in range(100):
        clash = (wrong == gen.check[bad_check]) | (wrong == other)
        if not clash.any():
            break
        wrong[clash] = rng.integers(1, 98, size=int(clash.sum()))
    gen.check[bad_check] = wrong

    # The second row of a pair carries the first's number (and so its birth date).
    gen.birth[dst] = gen.birth[src]
    gen.duplicate_of = (src, dst)
    gen.malformed = malformed

    fam_rows, fam_vals, giv_rows, giv_vals = [], [], [], []
    for i, row in enumerate(empty):
        column, value = _EMPTY_NAMES[i % len(_EMPTY_NAMES)]
        (fam_rows if column == "familienaam" else giv_rows).append(row)
        (fam_vals if column == "familienaam" else giv_vals).append(value)
    fam_now = gen.familienaam.take(pa.array(ctrl)).to_pylist()
    giv_now = gen.voornamen.take(pa.array(ctrl)).to_pylist()
    for i, row in enumerate(ctrl):
        char = _CONTROL_CHARS[i % len(_CONTROL_CHARS)]
        if i % 2 == 0:
            name = fam_now[i]
            fam_rows.append(row)
            fam_vals.append(name[: len(name) // 2] + char + name[len(name) // 2 :])
        else:
            giv_rows.append(row)
            giv_vals.append(giv_now[i] + char)
    gen.familienaam = _patch(gen.familienaam, np.array(fam_rows, dtype=np.int64), fam_vals)
    gen.voornamen = _patch(gen.voornamen, np.array(giv_rows, dtype=np.int64), giv_vals)

    old_codes = sorted(reference.crosswalk())
    gen.nis = _patch(
        gen.nis,
        np.concatenate([unknown, old_nis]),
        [_UNKNOWN_NIS[i % len(_UNKNOWN_NIS)] for i in range(unknown.size)]
        + [old_codes[i] for i in rng.integers(0, len(old_codes), size=old_nis.size)],
    )

    # Dates after the real today: half a contract (no attest yet), half an attest.
    when = _days(future_after) + rng.integers(30, 401, size=future.size)
    for i, row in enumerate(future):
        if i % 2 == 0:
            gen.contract[row], gen.has_contract[row], gen.has_attest[row] = when[i], True, False
        else:
            if not gen.has_contract[row]:
                gen.contract[row], gen.has_contract[row] = min(gen.birth[row] + 6605, ref - 1), True
            gen.attest[row], gen.has_attest[row] = when[i], True


# --- describing -------------------------------------------------------------------------------


def _meta(table: pa.Table) -> dict[str, object]:
    raw = (table.schema.metadata or {}).get(_METADATA_KEY)
    return json.loads(raw) if raw else {}


def _np_bool(arr: pa.Array | pa.ChunkedArray) -> np.ndarray:
    return np.asarray(pc.fill_null(arr, False).to_numpy(zero_copy_only=False), dtype=bool)


def _np_days(arr: pa.Array | pa.ChunkedArray, fill: int) -> np.ndarray:
    return np.asarray(pc.fill_null(arr.cast(pa.int32()), fill).to_numpy(zero_copy_only=False), np.int64)


def _matches(arr: pa.Array | pa.ChunkedArray, pattern: str) -> np.ndarray:
    return _np_bool(pc.match_substring_regex(arr, pattern))


def _blank(arr: pa.Array | pa.ChunkedArray) -> np.ndarray:
    return _np_bool(pc.or_kleene(pc.is_null(arr), pc.equal(pc.utf8_trim_whitespace(arr), "")))


def classify_insz(insz: pa.Array | pa.ChunkedArray, today: date | None = None) -> dict[str, np.ndarray]:
    """Per row: malformed, bad checksum, impossible date, valid national or BIS number.

    Mirrors python-stdnum's century rule (the 2000 rule only for years up to today's) and adds
    the day-of-month check that stdnum leaves out.
    """
    this_year = (today or date.today()).year
    if isinstance(insz, pa.ChunkedArray):
        insz = insz.combine_chunks()
    text = pc.fill_null(insz, "")
    wellformed = _matches(text, r"^[0-9]{11}$")
    digits = pc.if_else(pa.array(wellformed), text, "00000000000").cast(pa.int64())
    v = np.asarray(digits.to_numpy(zero_copy_only=False), dtype=np.int64)
    first9, check = v // 100, v % 100
    yy, mm, dd = first9 // 10_000_000, first9 // 100_000 % 100, first9 // 1000 % 100
    c1900 = 97 - first9 % 97 == check
    c2000 = (97 - (first9 + 2_000_000_000) % 97 == check) & (yy + 2000 <= this_year)
    checksum_ok = wellformed & (c1900 | c2000)
    year = yy + np.where(c1900, 1900, 2000)
    nn_month = mm <= 12
    bis_month = ((mm >= 20) & (mm <= 32)) | ((mm >= 40) & (mm <= 52))
    month = np.where(nn_month | bis_month, mm % 20, 1)
    start = ((year - 1970) * 12 + np.maximum(month, 1) - 1).astype("datetime64[M]")
    month_days = ((start + 1).astype("datetime64[D]") - start.astype("datetime64[D]")).astype(np.int64)
    # Month 0 or day 0 mean "unknown" in the register and are valid.
    bad_day = (month > 0) & (dd > month_days)
    impossible = checksum_ok & (~(nn_month | bis_month) | bad_day)
    valid = checksum_ok & ~impossible
    return {
        "malformed": ~wellformed,
        "invalid_checksum": wellformed & ~(c1900 | c2000),
        "impossible_birth_date": impossible,
        "nn": valid & nn_month,
        "bis": valid & bis_month,
        "value": v,
    }


def describe(table: pa.Table, reference_date: date | None = None) -> dict[str, int]:
    """Counts per target group, exclusion reason and defect kind, read from the data itself.

    Never a name or a number: these counts are what the CLI prints. ``reference_date`` defaults
    to the one the table was generated for.
    """
    meta = _meta(table)
    table = table.combine_chunks()
    ref_date = reference_date or date.fromisoformat(str(meta.get("reference_date", DEFAULT_REFERENCE_DATE)))
    ref = _days(ref_date)
    future_after = (
        date.fromisoformat(str(meta["future_after"]))
        if "future_after" in meta
        else _future_anchor(ref_date, date.today())
    )
    far = _days(future_after)

    kinds = classify_insz(table["insz"])
    registered = _np_bool(table["ingeschreven_rijksregister"])
    wellformed = ~kinds["malformed"]
    values = kinds["value"][wellformed]
    born = _np_days(table["geboortedatum"], 0)
    contract = _np_days(table["contract_ondertekend_op"], -(10**6))
    attest = _np_days(table["attest_behaald_op"], -(10**6))
    death = _np_days(table["overleden_op"], 10**6)
    nis = table["nis_code_hoofdverblijf"]
    munis = reference.municipalities()
    brussels = [c for c, m in munis.items() if not m.is_flemish]
    old = list(reference.crosswalk())
    known = _np_bool(pc.is_in(nis, value_set=pa.array(list(munis) + old)))
    names = [table["familienaam"], table["voornamen"]]
    hostile = np.zeros(table.num_rows, dtype=bool)
    control = np.zeros(table.num_rows, dtype=bool)
    blank = np.zeros(table.num_rows, dtype=bool)
    for col in names:
        hostile |= _matches(col, r'^[=+\-@]|[;"]')
        control |= _matches(col, r"[\x00-\x1f\x7f]")
        blank |= _blank(col)

    out: dict[str, int] = {"rows": table.num_rows}
    groups = table["doelgroep"].value_counts().to_pylist()
    by_group = {g["values"]: g["counts"] for g in groups}
    for g in DOELGROEPEN:
        out[f"doelgroep_{g}"] = int(by_group.get(g, 0))
    out["born_before_2000"] = int((born < _days(date(2000, 1, 1))).sum())
    out["born_2000_or_later"] = table.num_rows - out["born_before_2000"]
    out["with_contract"] = int((contract > -(10**6)).sum())
    out["with_attest"] = int((attest > -(10**6)).sum())
    out["dates_after_reference"] = int(
        (((contract > ref) & (contract <= far)) | ((attest > ref) & (attest <= far))).sum()
    )
    out["excluded_bis_not_registered"] = int((kinds["bis"] & ~registered).sum())
    out["excluded_waiting_register"] = int((kinds["nn"] & ~registered).sum())
    out["excluded_deceased"] = int((death <= ref).sum())
    out["deceased_after_reference"] = int(((death > ref) & (death < 10**6)).sum())
    out["excluded_no_residence"] = int(pc.sum(pc.is_null(nis).cast(pa.int64())).as_py() or 0)
    out["excluded_brussels"] = int(_np_bool(pc.is_in(nis, value_set=pa.array(brussels))).sum())
    out["warning_nis_pre_2025"] = int(_np_bool(pc.is_in(nis, value_set=pa.array(old))).sum())
    out["csv_hostile_name"] = int(hostile.sum())
    out["defect_duplicate_insz"] = int(values.size - np.unique(values).size)
    out["defect_invalid_checksum"] = int(kinds["invalid_checksum"].sum())
    out["defect_bis_registered"] = int((kinds["bis"] & registered).sum())
    out["defect_empty_name"] = int(blank.sum())
    out["defect_control_char_in_name"] = int(control.sum())
    out["defect_unknown_nis"] = int((~known & ~_np_bool(pc.is_null(nis))).sum())
    out["defect_future_date"] = int(((contract > far) | (attest > far)).sum())
    out["defect_impossible_birth_date"] = int(kinds["impossible_birth_date"].sum())
    out["defect_malformed_insz"] = int(kinds["malformed"].sum())
    return out


# --- writing ----------------------------------------------------------------------------------


def _sqlite_columns(table: pa.Table) -> list[pa.Array | pa.ChunkedArray]:
    """The columns as SQLite stores them: booleans 0/1, dates and timestamps as ISO text."""
    out = []
    for field in SCHEMA:
        col = table[field.name]
        if pa.types.is_boolean(field.type):
            col = col.cast(pa.int8())
        elif pa.types.is_date(field.type):
            col = col.cast(pa.string())
        elif pa.types.is_timestamp(field.type):
            col = col.cast(pa.timestamp("s")).cast(pa.string())
        out.append(col)
    return out


def _sqlite_batches(table: pa.Table, size: int = 100_000) -> Iterator[list[tuple[object, ...]]]:
    cols = _sqlite_columns(table)
    for start in range(0, table.num_rows, size):
        parts = [c.slice(start, size).to_pylist() for c in cols]
        yield list(zip(*parts, strict=True))


def write_sqlite(table: pa.Table, path: str | os.PathLike[str]) -> int:
    """Create or replace the SQLite source file (base table and view); returns the rows written.

    Built under a temporary name and renamed when complete, so a reader never sees half a file.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    insert = sqlfiles.load("synth/insert_dossier", "sqlite")
    try:
        con = sqlite3.connect(tmp)
        try:
            for stmt in sqlfiles.statements("synth/bulk_load_pragmas", "sqlite"):
                con.execute(stmt)
            with con:
                for stmt in sqlfiles.statements("synth/create_source", "sqlite"):
                    con.execute(stmt)
                for batch in _sqlite_batches(table):
                    con.executemany(insert, batch)
        finally:
            con.close()
        # A WAL left by the old file would be replayed into the new one.
        for suffix in ("-wal", "-shm", "-journal"):
            Path(f"{target}{suffix}").unlink(missing_ok=True)
        tmp.replace(target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return table.num_rows


_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def _identifier_statement(name: str, schema: str) -> Composed:
    from psycopg2 import sql as pgsql

    if not _SCHEMA_NAME.match(schema):
        raise ValueError("schema must be a lower-case SQL identifier")
    (stmt,) = sqlfiles.statements(name, "postgresql")
    return pgsql.SQL(stmt).format(schema=pgsql.Identifier(schema))


def _raw_postgres(url: str) -> PgConnection:
    import sqlalchemy as sa
    from sqlalchemy.pool import NullPool

    # A private, unpooled connection: its search_path and transaction affect nothing else. The
    # loader speaks psycopg2 (sql.Identifier, copy_expert) whatever driver the URL names.
    psycopg2_url = sa.engine.make_url(url).set(drivername="postgresql+psycopg2")
    return sa.create_engine(psycopg2_url, poolclass=NullPool).raw_connection()


def write_postgres(table: pa.Table, url: str, schema: str = "public") -> int:
    """Create or replace the source (base table and view) in ``schema`` and COPY the rows in.

    One transaction: a failed load leaves the previous source as it was.
    """
    schema_stmt = _identifier_statement("synth/create_schema", schema)
    path_stmt = _identifier_statement("synth/set_search_path", schema)
    (copy,) = sqlfiles.statements("synth/copy_dossier", "postgresql")
    options = pacsv.WriteOptions(include_header=False)
    con = _raw_postgres(url)
    try:
        cur = con.cursor()
        if schema != "public":
            cur.execute(schema_stmt)
        cur.execute(path_stmt)
        for stmt in sqlfiles.statements("synth/create_source", "postgresql"):
            cur.execute(stmt)
        for batch in table.select(SCHEMA.names).to_batches(max_chunksize=200_000):
            buf = io.BytesIO()
            pacsv.write_csv(batch, buf, options)
            buf.seek(0)
            cur.copy_expert(copy, buf)
        con.commit()
    except BaseException:
        con.rollback()
        raise
    finally:
        con.close()
    return table.num_rows


def drop_postgres_schema(url: str, schema: str) -> None:
    """Remove a synthetic source's own schema (tests clean up with it); refuses ``public``."""
    if schema == "public":
        raise ValueError("refusing to drop the public schema")
    stmt = _identifier_statement("synth/drop_schema", schema)
    con = _raw_postgres(url)
    try:
        con.cursor().execute(stmt)
        con.commit()
    finally:
        con.close()


# --- command line -----------------------------------------------------------------------------


def _rows_arg(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def main(argv: list[str] | None = None) -> int:
    """``python -m kbi.synth``: generate, load, print counts (never a name or a number)."""
    parser = argparse.ArgumentParser(
        prog="kbi synth", description="Generate the synthetic KBI source and load it (prints counts only)."
    )
    parser.add_argument("--rows", type=_rows_arg, required=True, help="number of dossiers")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument(
        "--reference-date", type=date.fromisoformat, default=DEFAULT_REFERENCE_DATE, metavar="YYYY-MM-DD"
    )
    parser.add_argument("--no-defects", action="store_true", help="no rows the quality checks must catch")
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--sqlite", type=Path, metavar="PATH", help="SQLite file to create or replace")
    target.add_argument("--postgres", metavar="URL", help="SQLAlchemy URL, e.g. postgresql+psycopg2://…")
    parser.add_argument("--schema", default="public", help="PostgreSQL schema (default: public)")
    args = parser.parse_args(argv)
    if args.sqlite is not None and args.schema != "public":
        parser.error("--schema goes with --postgres")

    table = generate(args.rows, args.seed, args.reference_date, defects=not args.no_defects)
    if args.sqlite is not None:
        write_sqlite(table, args.sqlite)
    else:
        write_postgres(table, args.postgres, args.schema)
    for key, value in describe(table).items():
        print(f"{key}: {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
