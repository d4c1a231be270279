"""profiler.core.units: length / int-list / dtype / byte-size syntax."""

import pytest

from profiler.core.errors import UsageError
from profiler.core.units import (
    MAX_VALUES,
    parse_bytes,
    parse_dtypes,
    parse_int_list,
    parse_lengths,
)


@pytest.mark.parametrize("text, expected", [
    ("1k..64k", [1024 * 2 ** i for i in range(7)]),
    ("1k..64k:x2", [1024 * 2 ** i for i in range(7)]),
    ("1k..8k:+1k", [1024 * i for i in range(1, 9)]),
    ("512,1k,3000", [512, 1024, 3000]),
    ("3000, 512 ,1k", [512, 1024, 3000]),
    ("1k..4k:x1.5", [1024, 1536, 2304, 3456]),
    ("1..10:+3", [1, 4, 7, 10]),
    ("100..1000", [100, 200, 400, 800]),
    ("1.5k", [1536]),
    ("1m", [1024 ** 2]),
    ("512,1k..2k,2k", [512, 1024, 2048]),
    ("64K", [64 * 1024]),
])
def test_parse_lengths_valid(text, expected):
    assert parse_lengths(text) == expected


@pytest.mark.parametrize("text, fragment", [
    ("", "empty"),
    ("1k..", "bad length"),
    ("abc", "bad length"),
    ("4k..1k", "goes down"),
    ("1k..8k:x1", "must be > 1"),
    ("1k..8k:xq", "bad factor"),
    ("1k..8k:y2", "bad step"),
    ("1k..8k:", "empty step"),
    ("0", ">= 1"),
    ("1.3", "whole number"),
    ("1,,2", "empty item"),
    ("-5", "bad length"),
    ("1..1000000:+1", str(MAX_VALUES)),
])
def test_parse_lengths_invalid(text, fragment):
    with pytest.raises(UsageError) as err:
        parse_lengths(text)
    msg = str(err.value)
    assert fragment in msg and "\n" not in msg


def test_parse_int_list_names_what_is_wrong():
    assert parse_int_list("1,2,4") == [1, 2, 4]
    assert parse_int_list("4,1") == [1, 4]
    with pytest.raises(UsageError, match="batch size"):
        parse_int_list("1,x", "batch size")


@pytest.mark.parametrize("text, expected", [
    ("fp32,bf16", ["float32", "bfloat16"]),
    ("float32,f32,fp32", ["float32"]),
    ("half, FP16", ["float16"]),
    ("bfloat16,float16", ["bfloat16", "float16"]),
])
def test_parse_dtypes(text, expected):
    assert parse_dtypes(text) == expected


@pytest.mark.parametrize("text", ["fp8", "", "fp32,,", "int8"])
def test_parse_dtypes_invalid(text):
    with pytest.raises(UsageError, match="fp32, fp16, bf16"):
        parse_dtypes(text)


@pytest.mark.parametrize("text, expected", [
    ("80GiB", 80 * 1024 ** 3),
    ("512MiB", 512 * 1024 ** 2),
    ("8GB", 8 * 10 ** 9),
    ("1.5KiB", 1536),
    ("4096", 4096),
    ("2 tib", 2 * 1024 ** 4),
])
def test_parse_bytes(text, expected):
    assert parse_bytes(text) == expected


@pytest.mark.parametrize("text", ["", "GiB", "8 parsecs", "-1GB", "0.1", "1.2.3MB"])
def test_parse_bytes_invalid(text):
    with pytest.raises(UsageError, match="GiB"):
        parse_bytes(text)
