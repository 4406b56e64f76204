from __future__ import annotations

import base64

import orjson
import pytest

from iotjobs.domain.errors import DomainError
from iotjobs.wire.pagination import _digest, decode_token, encode_token

FILTERS = {"status": None}


def test_a_token_round_trips() -> None:
    token = encode_token([1.5, "j1"], FILTERS)
    assert decode_token(token, FILTERS, (float, str)) == [1.5, "j1"]
    assert decode_token(None, FILTERS, (float, str)) is None


@pytest.mark.parametrize("key", [["x", "y"], [1.0], [1.0, "j", 3], [True, "j"], "k"])
def test_a_crafted_key_of_the_wrong_shape_is_refused(key: object) -> None:
    crafted = base64.urlsafe_b64encode(orjson.dumps({"k": key, "f": _digest(FILTERS)})).decode()
    with pytest.raises(DomainError, match="nextToken is not a token this service issued"):
        decode_token(crafted, FILTERS, (float, str))


def test_a_token_for_other_filters_is_refused() -> None:
    with pytest.raises(DomainError, match="different request"):
        decode_token(encode_token([1.0, "j"], FILTERS), {"status": "QUEUED"}, (float, str))
