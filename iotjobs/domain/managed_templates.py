"""AWS managed job templates (aws-iot-jobs.md §3.3, §6.11): the catalog, and CreateJob's `documentParameters`.

Where the facts come from (docs/adr/0014-document-placeholders.md has the whole list):

- Published by AWS (developer guide, "Use AWS managed templates to deploy common remote operations", and
  the AWS CLI example of describe-managed-job-template): the template names, version 1.0, the LINUX
  environment, each template's job document, which parameters each takes and which are optional, the
  ARN form `arn:aws:iot:<region>::jobtemplate/<name>:<version>`, and AWS-Download-File's parameter
  patterns (`(.*?)` for its required parameters, `(.){0,256}` for runAsUser, `(.){0,4096}` for
  pathToHandler).
- Chosen here: every description and example (written for this catalog, not AWS's wording), the patterns
  of the other templates' required parameters (`(.*?)`, as AWS-Download-File's), and that an optional
  parameter left out is filled with the empty string.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from iotjobs.domain import validation as v
from iotjobs.domain.documents import substitute_parameters
from iotjobs.domain.errors import invalid, not_found

LINUX = "LINUX"
ANY_TEXT = "(.*?)"
RUN_AS_USER_PATTERN = "(.){0,256}"
PATH_TO_HANDLER_PATTERN = "(.){0,4096}"
_ARN = re.compile(
    r"arn:aws(?:-[a-z]+)*:iot:(?P<region>[a-z0-9-]+)::jobtemplate/(?P<name>[^:/]+)(?::(?P<version>[^:/]+))?"
)


@dataclass(frozen=True)
class DocumentParameter:
    key: str
    description: str
    regex: str
    example: str
    optional: bool = False


@dataclass(frozen=True)
class ManagedTemplate:
    name: str
    version: str
    description: str
    parameters: tuple[DocumentParameter, ...]
    document: str
    environments: tuple[str, ...] = (LINUX,)

    def arn(self, region: str) -> str:
        return f"arn:aws:iot:{region}::jobtemplate/{self.name}:{self.version}"

    def parameter(self, key: str) -> DocumentParameter | None:
        return next((p for p in self.parameters if p.key == key), None)


# --- the catalog ------------------------------------------------------------------------------

RUN_AS_USER = DocumentParameter(
    "runAsUser",
    "The device user the step runs as; left empty, it runs as the device software's own user.",
    RUN_AS_USER_PATTERN,
    "jobs-runner",
    optional=True,
)
PATH_TO_HANDLER = DocumentParameter(
    "pathToHandler",
    "The directory on the device that holds the handler; left empty, the device software's default.",
    PATH_TO_HANDLER_PATTERN,
    "/opt/jobs/handlers",
    optional=True,
)


def _handler_document(action: str, handler: str, args: tuple[str, ...]) -> str:
    """One `runHandler` step, as the managed templates write it (the Device Client's job schema 1.0)."""
    inputs: dict[str, Any] = {"handler": handler}
    if args:
        inputs["args"] = [f"${{aws:iot:parameter:{arg}}}" for arg in args]
    inputs["path"] = "${aws:iot:parameter:pathToHandler}"
    step = {
        "action": {"name": action, "type": "runHandler", "input": inputs, "runAsUser": "${aws:iot:parameter:runAsUser}"}
    }
    return _compact({"version": "1.0", "steps": [step]})


def _compact(document: dict[str, Any]) -> str:
    return json.dumps(document, separators=(",", ":"))


def _handler_template(
    name: str, description: str, action: str, handler: str, required: tuple[DocumentParameter, ...] = ()
) -> ManagedTemplate:
    document = _handler_document(action, handler, tuple(p.key for p in required))
    return ManagedTemplate(name, "1.0", description, (*required, RUN_AS_USER, PATH_TO_HANDLER), document)


def _required(key: str, description: str, example: str) -> DocumentParameter:
    return DocumentParameter(key, description, ANY_TEXT, example)


PACKAGES = "Package names separated by spaces."
SERVICES = "Service names separated by spaces."

CATALOG: tuple[ManagedTemplate, ...] = (
    _handler_template(
        "AWS-Download-File",
        "Downloads a file from a URL to a path on the device.",
        "Download-File",
        "download-file.sh",
        (
            _required(
                "downloadUrl", "Where the file is read from: any URL the device can reach.", "https://example.com/a.bin"
            ),
            _required("filePath", "Where on the device the file is written.", "/var/lib/app/a.bin"),
        ),
    ),
    _handler_template(
        "AWS-Install-Application",
        "Installs one or more packages on the device.",
        "Install-Application",
        "install-packages.sh",
        (_required("packages", PACKAGES, "curl jq"),),
    ),
    _handler_template("AWS-Reboot", "Reboots the device.", "Reboot", "reboot.sh"),
    _handler_template(
        "AWS-Remove-Application",
        "Uninstalls one or more packages from the device.",
        "Remove-Application",
        "remove-packages.sh",
        (_required("packages", PACKAGES, "curl jq"),),
    ),
    _handler_template(
        "AWS-Restart-Application",
        "Stops one or more services on the device and starts them again.",
        "Restart-Application",
        "restart-services.sh",
        (_required("services", SERVICES, "nginx"),),
    ),
    ManagedTemplate(
        "AWS-Run-Command",
        "1.0",
        "Runs a command on the device.",
        (
            _required(
                "command",
                "The command and its arguments separated by commas; a comma inside one of them is escaped.",
                "systemctl,restart,nginx",
            ),
            RUN_AS_USER,
        ),
        _compact(
            {
                "version": "1.0",
                "steps": [
                    {
                        "action": {
                            "name": "Run-Command",
                            "type": "runCommand",
                            "input": {"command": "${aws:iot:parameter:command}"},
                            "runAsUser": "${aws:iot:parameter:runAsUser}",
                        }
                    }
                ],
            }
        ),
    ),
    _handler_template(
        "AWS-Start-Application",
        "Starts one or more services on the device.",
        "Start-Application",
        "start-services.sh",
        (_required("services", SERVICES, "nginx"),),
    ),
    _handler_template(
        "AWS-Stop-Application",
        "Stops one or more services on the device.",
        "Stop-Application",
        "stop-services.sh",
        (_required("services", SERVICES, "nginx"),),
    ),
)
"""Every managed template, by name and then version: the order ListManagedJobTemplates answers in."""

DEFAULT_VERSIONS: dict[str, str] = {t.name: t.version for t in CATALOG}
"""The version a request without one gets: the latest (each template has one version, 1.0, so far)."""


# --- look-ups ---------------------------------------------------------------------------------


def parse_arn(arn: str) -> tuple[str, str, str | None] | None:
    """(region, name, version or None) of a managed template's ARN (no account); None for any other ARN."""
    match = _ARN.fullmatch(arn)
    return None if match is None else (match["region"], match["name"], match["version"])


def find(name: str, version: str | None = None) -> ManagedTemplate:
    """The template of that name, at `version` or its default version; ResourceNotFound otherwise."""
    versions = [t for t in CATALOG if t.name == name]
    if not versions:
        raise not_found(f"Managed job template {name} does not exist")
    wanted = DEFAULT_VERSIONS[name] if version is None else version
    for template in versions:
        if template.version == wanted:
            return template
    raise not_found(
        f"Managed job template {name} has no version {wanted}; it has {', '.join(t.version for t in versions)}"
    )


def listed(name: str | None = None) -> list[ManagedTemplate]:
    """Every template, or every version of one (ResourceNotFound for a name the catalog lacks)."""
    if name is None:
        return list(CATALOG)
    found = [t for t in CATALOG if t.name == name]
    if not found:
        raise not_found(f"Managed job template {name} does not exist")
    return found


# --- documentParameters -----------------------------------------------------------------------


def fill(template: ManagedTemplate, values: Mapping[str, str]) -> str:
    """The template's document with `values` in its parameter placeholders, once each is checked against
    the template's DocumentParameter list; InvalidRequest naming the first key that does not fit."""
    for key in values:
        if template.parameter(key) is None:
            keys = ", ".join(p.key for p in template.parameters)
            raise invalid(
                f"documentParameters key '{key}' is not a parameter of managed template {template.name}; "
                f"its parameters are {keys}"
            )
    for parameter in template.parameters:
        value = values.get(parameter.key)
        if value is None:
            if not parameter.optional:
                raise invalid(
                    f"documentParameters must give '{parameter.key}', which managed template {template.name} requires"
                )
            continue
        if not isinstance(value, str) or re.fullmatch(parameter.regex, value) is None:
            raise invalid(
                f"documentParameters value of '{parameter.key}' does not match the pattern {parameter.regex} "
                f"of managed template {template.name}"
            )
    document = substitute_parameters(template.document, values)
    return v.check_document(document, f"the document of {template.name} with these documentParameters")
