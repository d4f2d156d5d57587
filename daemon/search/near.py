"""Place filters: near a city or a position (--near, --within), in a country (--country).

Each is one rule written twice, as search/filters.py's are: a SQL clause over the media row `m` and
a match() over a FileRow. Near is the great-circle distance by the spherical law of cosines on both
sides (SQLite's math functions and Python's are the same libm), so the two agree to the bit; its
clause first narrows to a latitude band and a longitude box that the (latitude, longitude) index
serves, so a --near at 1M contents reads only the rows in the box. Names are resolved here, in the
process that holds the gazetteer: an unknown city or country is one sentence, through the daemon
and directly alike.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from ..protocol import NEAR_KM, Filters, RequestError, position
from ..store import places
from ..store.records import FileMeta, FileRow
from ..store.selection import Clause, Filter

_BOX_SLACK = 1e-9  # degrees: the box only narrows, the exact test decides, so it must never cut a point inside


@dataclass(frozen=True)
class Center:
    """Where --near points: the position, and the city taken when a name was given."""

    latitude: float
    longitude: float
    city: places.City | None = None

    def describe(self) -> dict[str, Any]:
        """What --json says of the place taken."""
        named = self.city.place.label() if self.city else None
        return {"place": named, "latitude": self.latitude, "longitude": self.longitude}


def center(near: str) -> Center:
    """The position --near names: LAT,LON as given, else the most populous city of that name."""
    given = position(near)
    if given is not None:
        return Center(*given)
    city = places.gazetteer().city(near)
    if city is None:
        raise RequestError(f"no city called '{near}' is known; give a city of at least 15,000 people, or LAT,LON.")
    return Center(city.latitude, city.longitude, city)


@dataclass(frozen=True)
class Near(Filter):
    """Within `km` of a position, along the earth's surface; a content without GPS is never near."""

    latitude: float
    longitude: float
    km: float

    def _reach(self) -> tuple[float, float, float, float]:
        """(sin lat, cos lat, lon in radians, cos of the angle): the law of cosines' constants."""
        lat = math.radians(self.latitude)
        return (
            math.sin(lat),
            math.cos(lat),
            math.radians(self.longitude),
            math.cos(min(math.pi, self.km / places.EARTH_KM)),
        )

    def _box(self) -> tuple[float, float, list[tuple[float, float]]]:
        """The latitude band and longitude ranges holding every point within reach (split at 180 degrees)."""
        angle = math.degrees(self.km / places.EARTH_KM)
        low, high = self.latitude - angle - _BOX_SLACK, self.latitude + angle + _BOX_SLACK
        if low <= -90 or high >= 90 or angle >= 90:  # a pole is within reach: every longitude is
            return low, high, [(-180.0, 180.0)]
        spread = math.degrees(
            math.asin(min(1.0, math.sin(self.km / places.EARTH_KM) / math.cos(math.radians(self.latitude))))
        )
        west, east = self.longitude - spread - _BOX_SLACK, self.longitude + spread + _BOX_SLACK
        if west < -180:
            return low, high, [(west + 360, 180.0), (-180.0, east)]
        if east > 180:
            return low, high, [(west, 180.0), (-180.0, east - 360)]
        return low, high, [(west, east)]

    def clause(self) -> Clause:
        low, high, ranges = self._box()
        sin_lat, cos_lat, lon, least = self._reach()
        spans = " OR ".join("m.longitude BETWEEN ? AND ?" for _ in ranges)
        sql = (
            f"(m.latitude BETWEEN ? AND ? AND ({spans}) AND "
            "sin(radians(m.latitude)) * ? + cos(radians(m.latitude)) * ? * cos(radians(m.longitude) - ?) >= ?)"
        )
        return sql, [low, high, *(bound for pair in ranges for bound in pair), sin_lat, cos_lat, lon, least]

    def match(self, row: FileRow) -> bool:
        if row.latitude is None or row.longitude is None:
            return False
        sin_lat, cos_lat, lon, least = self._reach()
        lat = math.radians(row.latitude)
        return math.sin(lat) * sin_lat + math.cos(lat) * cos_lat * math.cos(math.radians(row.longitude) - lon) >= least


@dataclass(frozen=True)
class InCountry(Filter):
    """Its place is in this country (ISO code); a content without a place is in none."""

    code: str

    def clause(self) -> Clause:
        return "m.country = ?", [self.code]

    def match(self, row: FileRow) -> bool:
        return row.country == self.code


def country_code(name: str) -> str:
    """The ISO code of a country named by its name or code, or one sentence."""
    code = places.gazetteer().country_code(name)
    if code is None:
        raise RequestError(f"no country called '{name}' is known; give its English name or its ISO code (PT, PRT).")
    return code


def place_filters(filters: Filters) -> list[Filter]:
    """The place filters of a request (none without --near or --country: the gazetteer stays unloaded)."""
    chosen: list[Filter] = []
    if filters.near is not None:
        point = center(filters.near)
        chosen.append(Near(point.latitude, point.longitude, filters.within_km or NEAR_KM))
    if filters.country is not None:
        chosen.append(InCountry(country_code(filters.country)))
    return chosen


def place_fields(meta: FileMeta, filters: Filters) -> dict[str, Any]:
    """A hit's `place` (when its GPS names one) and, under --near, `near`: the place taken and how far
    the photo is from it."""
    fields: dict[str, Any] = {}
    if meta.city is not None and meta.country is not None:
        fields["place"] = places.Place(meta.city, meta.region, meta.country).as_dict()
    if filters.near is not None:
        point = center(filters.near)
        far = None
        if meta.latitude is not None and meta.longitude is not None:
            far = round(places.distance_km(point.latitude, point.longitude, meta.latitude, meta.longitude), 3)
        fields["near"] = {**point.describe(), "km": far}
    return fields
