"""protocol: every request checks itself the same way, whether typed on the command line or read from the socket."""

from __future__ import annotations

import json

import pytest
from imgd.daemon.protocol import (
    DupesRequest,
    Filters,
    Options,
    RequestError,
    SearchRequest,
    SimilarRequest,
    StatusRequest,
    Term,
    min_size,
    parse,
)


def roundtrip(request):
    return parse(json.loads(json.dumps(request.to_message())))


def test_requests_survive_the_socket_unchanged():
    search = SearchRequest(
        terms=(Term("text", "beach"), Term("image", "/p/ref.jpg", 2.0), Term("text", "people", -0.5)),
        options=Options(
            k=25,
            filters=Filters(folders=("/p",), after="2023", before="2024-02", camera="Canon", types=("JPEG", "png")),
            min_score=0.2,
            auto_cut=True,
            sort="date",
        ),
    )
    assert roundtrip(search) == search
    assert roundtrip(SimilarRequest(path="/p/a.jpg")) == SimilarRequest(path="/p/a.jpg")
    assert roundtrip(SimilarRequest(content_id=42)) == SimilarRequest(content_id=42)
    assert roundtrip(StatusRequest()) == StatusRequest()
    assert roundtrip(StatusRequest(duplicates=True)).duplicates is True


def test_dates_and_types_are_normalised():
    filters = Filters(after="2023", before="2023-6-5", types=("jpeg", "JPG", ".tif"))
    assert (filters.after, filters.before) == ("2023-01-01", "2023-06-05")
    assert filters.types == ("jpg", "tiff")


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: Filters(after="last week"), "'last week' is not a date"),
        (lambda: Filters(after="2023-02-30"), "not a real date"),
        (lambda: Filters(after="2024", before="2023"), "is not earlier than before"),
        (lambda: Filters(types=("psd",)), "unknown file type 'psd'"),
        (lambda: Filters(folders=("relative",)), "absolute folders"),
        (lambda: Filters(orientation="diagonal"), "orientation must be one of"),
        (lambda: Options(k=0), "from 1 to 1000"),
        (lambda: Options(k=1001), "from 1 to 1000"),
        (lambda: Options(min_score=1.5), "from -1 to 1"),
        (lambda: Options(sort="size"), "sort must be one of"),
        (lambda: Term("text", "dog", float("nan")), "finite number"),
        (lambda: Term("text", "dog", 0), "weight of 'dog' is 0"),
        (lambda: Term("text", "   "), "non-empty"),
        (lambda: SearchRequest(terms=()), "the query is empty"),
        (lambda: SearchRequest(terms=(Term("text", "dog", -1),)), "only negative terms"),
        (lambda: SimilarRequest(path="a.jpg"), "absolute file path"),
        (lambda: SimilarRequest(path="/p/a.jpg", content_id=3), "a file path or a content id, not both"),
        (lambda: SimilarRequest(content_id=0), "content_id must be a whole number of at least 1"),
        (lambda: StatusRequest(duplicates="yes"), "'duplicates' must be true or false"),
    ],
)
def test_bad_values_are_refused_with_one_sentence(build, message):
    with pytest.raises(RequestError, match=message):
        build()


@pytest.mark.parametrize(
    ("message", "problem"),
    [
        ([1, 2], "must be a JSON object"),
        ({"op": "drop"}, "unknown operation 'drop'"),
        ({"op": "search", "terms": "dog"}, "'terms' must be a list"),
        (
            {"op": "search", "terms": [{"kind": "text", "value": "x", "colour": 1}]},
            "unknown field(s) in 'term': colour",
        ),
        ({"op": "search", "terms": [{"kind": "text", "value": "x"}], "options": []}, "'options' must be an object"),
        ({"op": "search", "terms": [{"kind": "text", "value": "x"}], "options": {"k": True}}, "whole number"),
        ({"op": "search", "terms": [{"kind": "text", "value": "x"}], "options": {"filters": 3}}, "must be an object"),
        ({"op": "status", "extra": 1}, "unknown field(s) in 'status': extra"),
    ],
)
def test_malformed_socket_messages_get_a_request_error(message, problem):
    with pytest.raises(RequestError) as caught:
        parse(message)
    assert problem in str(caught.value)


FIELD_ERRORS = [
    (lambda: Filters(after="June"), "after: 'June' is not a date; write YYYY, YYYY-MM or YYYY-MM-DD."),
    (lambda: Filters(before="2024-13"), "before: '2024-13' is not a real date."),
    (
        lambda: Filters(after="2024", before="2023"),
        "after 2024-01-01 is not earlier than before 2023-01-01; nothing can match.",
    ),
    (lambda: Filters(folders=("rel",)), "folders needs absolute folders, not 'rel'."),
    (lambda: Filters(camera=" "), "camera must be a non-empty string."),
    (
        lambda: Filters(types=("psd",)),
        "types: unknown file type 'psd'; use jpg, png, webp, gif, bmp, tiff, heic, avif, jxl, raw, cr2, cr3, nef, "
        "nrw, arw, raf, orf, rw2, dng, pef, srw, mp4, mov, m4v, 3gp, mkv, webm, avi.",
    ),
    (lambda: min_size("big"), "min_size: 'big' is not a size; write WIDTHxHEIGHT, a side in pixels, or 12MP."),
    (lambda: Options(k=0), "k must be a whole number from 1 to 1000, not 0."),
    (lambda: Options(min_score=2), "min_score is a cosine similarity from -1 to 1, not 2.0."),
    (lambda: Options(min_score=float("nan")), "min_score must be a finite number, not nan."),
    (lambda: Options(sort="size"), "sort must be one of score, date, path, not 'size'."),
    (lambda: DupesRequest(threshold=1.5), "threshold is a cosine similarity above 0 and at most 1, not 1.5."),
    (lambda: DupesRequest(burst_gap=0), "burst_gap is a number of seconds above 0 and at most 3600, not 0."),
    (lambda: DupesRequest(within=("rel",)), "within needs absolute folders, not ('rel',)."),
]


@pytest.mark.parametrize(("build", "message"), FIELD_ERRORS)
def test_errors_name_the_request_field_never_a_flag_and_each_caller_words_it(build, message):
    with pytest.raises(RequestError) as caught:
        build()
    assert str(caught.value) == message
    assert "--" not in str(caught.value)
    field = message.split(":")[0].split(" ")[0]
    assert caught.value.worded({field: "<" + field + ">"}) == message.replace(field, "<" + field + ">", 1)
