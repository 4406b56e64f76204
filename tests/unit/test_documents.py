"""Placeholders in job documents, and the AWS managed templates' documentParameters (aws-iot-jobs.md §6.11)."""

from __future__ import annotations

import json

import pytest

from iotjobs.domain import documents as d
from iotjobs.domain import managed_templates as m
from iotjobs.domain.errors import DomainError, ErrorKind

# --- S3 object URLs ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "bucket", "key"),
    [
        ("https://s3.amazonaws.com/firmware/v2/image.bin", "firmware", "v2/image.bin"),
        ("https://s3.us-west-2.amazonaws.com/firmware/image.bin", "firmware", "image.bin"),
        ("https://s3-eu-west-1.amazonaws.com/firmware/image.bin", "firmware", "image.bin"),
        ("https://s3.dualstack.us-east-1.amazonaws.com/firmware/image.bin", "firmware", "image.bin"),
        ("https://firmware.s3.amazonaws.com/v2/image.bin", "firmware", "v2/image.bin"),
        ("https://firmware.s3.us-west-2.amazonaws.com/image.bin", "firmware", "image.bin"),
        ("https://my.firm-ware.s3-eu-west-1.amazonaws.com/image.bin", "my.firm-ware", "image.bin"),
        ("https://s3.cn-north-1.amazonaws.com.cn/firmware/image.bin", "firmware", "image.bin"),
        ("https://s3.amazonaws.com/firmware/with%20space%2Bplus.bin", "firmware", "with space+plus.bin"),
    ],
)
def test_s3_object_urls_name_their_bucket_and_key(url: str, bucket: str, key: str) -> None:
    found = d.s3_object(url)
    assert found is not None
    assert (found.bucket, found.key) == (bucket, key)


@pytest.mark.parametrize(
    "url",
    [
        "https://example.com/firmware/image.bin",
        "https://s3.amazonaws.com/firmware",  # a bucket, no object
        "https://s3.amazonaws.com/firmware/",
        "https://firmware.s3.amazonaws.com/",
        "ftp://s3.amazonaws.com/firmware/image.bin",
        "https://s3.amazonaws.com.evil.example/firmware/image.bin",
        "not a url",
    ],
)
def test_other_urls_are_no_s3_objects(url: str) -> None:
    assert d.s3_object(url) is None


# --- presigned-URL placeholders ---------------------------------------------------------------


def _signer(url: str, target: d.S3Object | None) -> str | None:
    return None if target is None else f"https://signed.example/{target.bucket}/{target.key}?sig=1&x=%2F"


def test_every_presigned_placeholder_is_replaced_and_the_rest_stays_byte_for_byte() -> None:
    document = (
        '{\n  "a": "${aws:iot:s3-presigned-url:https://s3.amazonaws.com/b/k1}",\n'
        '  "b": ["x ${aws:iot:s3-presigned-url:https://b.s3.us-east-1.amazonaws.com/dir/k2} y"],\n  "n": 1\n}'
    )
    out = d.substitute_presigned_urls(document, _signer)
    assert out == (
        '{\n  "a": "https://signed.example/b/k1?sig=1&x=%2F",\n'
        '  "b": ["x https://signed.example/b/dir/k2?sig=1&x=%2F y"],\n  "n": 1\n}'
    )
    assert json.loads(out)["b"] == ["x https://signed.example/b/dir/k2?sig=1&x=%2F y"]


def test_a_placeholder_written_with_escaped_slashes_is_read_as_json_text() -> None:
    document = '{"url": "${aws:iot:s3-presigned-url:https:\\/\\/s3.amazonaws.com\\/b\\/k}"}'
    assert d.presigned_urls(document) == ["https://s3.amazonaws.com/b/k"]
    assert json.loads(d.substitute_presigned_urls(document, _signer)) == {
        "url": "https://signed.example/b/k?sig=1&x=%2F"
    }


def test_a_placeholder_the_signer_declines_is_delivered_unchanged() -> None:
    document = '{"u": "${aws:iot:s3-presigned-url:https://example.com/b/k}", "v": "plain"}'
    assert d.substitute_presigned_urls(document, _signer) == document
    assert d.substitute_presigned_urls('{"v": "no placeholder"}', _signer) == '{"v": "no placeholder"}'


def test_a_signed_url_is_escaped_into_the_json_string() -> None:
    document = '{"u": "${aws:iot:s3-presigned-url:https://s3.amazonaws.com/b/k}"}'
    out = d.substitute_presigned_urls(document, lambda _url, _target: 'https://x/"quoted"\\')
    assert json.loads(out) == {"u": 'https://x/"quoted"\\'}


def test_the_signer_is_asked_once_per_placeholder_each_time() -> None:
    asked: list[str] = []

    def counting(url: str, target: d.S3Object | None) -> str:
        asked.append(url)
        return f"signed-{len(asked)}"

    document = '{"a": "${aws:iot:s3-presigned-url:https://s3.amazonaws.com/b/k}"}'
    assert d.substitute_presigned_urls(document, counting) == '{"a": "signed-1"}'
    assert d.substitute_presigned_urls(document, counting) == '{"a": "signed-2"}'


# --- parameter placeholders -------------------------------------------------------------------


def test_parameters_are_filled_escaped_and_missing_ones_are_empty() -> None:
    document = '{"a": "${aws:iot:parameter:one}", "b": ["${aws:iot:parameter:two}-${aws:iot:parameter:one}"]}'
    assert d.parameter_keys(document) == ["one", "two"]
    filled = d.substitute_parameters(document, {"one": 'say "hi"\\'})
    assert json.loads(filled) == {"a": 'say "hi"\\', "b": ['-say "hi"\\']}


# --- the managed template catalog -------------------------------------------------------------

NAMES = [
    "AWS-Download-File",
    "AWS-Install-Application",
    "AWS-Reboot",
    "AWS-Remove-Application",
    "AWS-Restart-Application",
    "AWS-Run-Command",
    "AWS-Start-Application",
    "AWS-Stop-Application",
]


def test_the_catalog_lists_every_template_once_by_name() -> None:
    assert [t.name for t in m.CATALOG] == NAMES
    assert all(t.version == "1.0" and t.environments == ("LINUX",) for t in m.CATALOG)


@pytest.mark.parametrize("template", m.CATALOG, ids=lambda t: t.name)
def test_each_template_declares_exactly_the_parameters_its_document_uses(template: m.ManagedTemplate) -> None:
    assert sorted(d.parameter_keys(template.document)) == sorted(p.key for p in template.parameters)
    assert json.loads(template.document)["version"] == "1.0"
    for parameter in template.parameters:
        # each example fits its own pattern, so DescribeManagedJobTemplate never shows one that is refused
        assert m.fill(
            template,
            {p.key: p.example for p in template.parameters if not p.optional} | {parameter.key: parameter.example},
        )


def test_download_file_has_the_parameters_aws_publishes() -> None:
    template = m.find("AWS-Download-File")
    shown = [(p.key, p.regex, p.optional) for p in template.parameters]
    assert shown == [
        ("downloadUrl", "(.*?)", False),
        ("filePath", "(.*?)", False),
        ("runAsUser", "(.){0,256}", True),
        ("pathToHandler", "(.){0,4096}", True),
    ]
    assert [p.key for p in m.find("AWS-Run-Command").parameters] == ["command", "runAsUser"]
    assert [p.key for p in m.find("AWS-Reboot").parameters] == ["runAsUser", "pathToHandler"]


def test_filling_a_template_substitutes_given_values_and_empties_absent_optional_ones() -> None:
    filled = m.fill(m.find("AWS-Download-File"), {"downloadUrl": "https://example.com/f", "filePath": "/tmp/f"})
    action = json.loads(filled)["steps"][0]["action"]
    assert action["input"] == {"handler": "download-file.sh", "args": ["https://example.com/f", "/tmp/f"], "path": ""}
    assert action["runAsUser"] == ""
    again = m.fill(m.find("AWS-Run-Command"), {"command": "echo,hi", "runAsUser": "pi"})
    assert json.loads(again)["steps"][0]["action"] == {
        "name": "Run-Command",
        "type": "runCommand",
        "input": {"command": "echo,hi"},
        "runAsUser": "pi",
    }


@pytest.mark.parametrize(
    ("name", "values", "needle"),
    [
        ("AWS-Download-File", {"filePath": "/tmp/f"}, "must give 'downloadUrl'"),
        ("AWS-Download-File", {"downloadUrl": "u", "filePath": "f", "mode": "x"}, "'mode' is not a parameter"),
        ("AWS-Download-File", {"downloadUrl": "u", "filePath": "f", "runAsUser": "u" * 257}, "'runAsUser'"),
        ("AWS-Reboot", {"packages": "x"}, "'packages' is not a parameter of managed template AWS-Reboot"),
        ("AWS-Run-Command", {"command": "ls", "pathToHandler": "/x"}, "'pathToHandler' is not a parameter"),
        ("AWS-Install-Application", {"packages": "a\nb"}, "does not match the pattern (.*?)"),
        ("AWS-Download-File", {"downloadUrl": "u" * 33000, "filePath": "f"}, "32768"),
    ],
)
def test_parameters_that_do_not_fit_are_invalid_requests_naming_the_key(
    name: str, values: dict[str, str], needle: str
) -> None:
    with pytest.raises(DomainError) as caught:
        m.fill(m.find(name), values)
    assert caught.value.kind == ErrorKind.INVALID_REQUEST
    assert needle in caught.value.message


def test_templates_are_found_by_name_and_version_and_arns_parsed() -> None:
    assert m.find("AWS-Reboot").arn("eu-west-1") == "arn:aws:iot:eu-west-1::jobtemplate/AWS-Reboot:1.0"
    assert m.find("AWS-Reboot", "1.0") is m.find("AWS-Reboot")
    for name, version in (("AWS-Nothing", None), ("AWS-Reboot", "2.0")):
        with pytest.raises(DomainError) as caught:
            m.find(name, version)
        assert caught.value.kind == ErrorKind.RESOURCE_NOT_FOUND
    assert [t.name for t in m.listed("AWS-Reboot")] == ["AWS-Reboot"]
    assert m.parse_arn("arn:aws:iot:us-east-1::jobtemplate/AWS-Reboot:1.0") == ("us-east-1", "AWS-Reboot", "1.0")
    assert m.parse_arn("arn:aws:iot:us-east-1::jobtemplate/AWS-Reboot") == ("us-east-1", "AWS-Reboot", None)
    assert m.parse_arn("arn:aws:iot:us-east-1:123456789012:jobtemplate/mine") is None


def test_the_v2_placeholder_form_is_read_and_replaced_like_the_first() -> None:
    document = json.dumps({"a": "${aws:iot:s3-presigned-url-v2:https://s3.us-east-1.amazonaws.com/b/k.bin}"})
    assert d.presigned_urls(document) == ["https://s3.us-east-1.amazonaws.com/b/k.bin"]
    signed = d.substitute_presigned_urls(document, lambda _url, obj: f"https://signed/{obj.key}" if obj else None)
    assert json.loads(signed) == {"a": "https://signed/k.bin"}
    assert d.s3_object("s3://bucket/dir/fw%201.bin") == d.S3Object("bucket", "/dir/fw%201.bin")
    assert d.s3_object("s3://bucket/") is None
