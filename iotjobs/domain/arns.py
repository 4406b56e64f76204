"""ARNs of the resources iotjobs serves."""

from __future__ import annotations

import re
from dataclasses import dataclass

from iotjobs.domain.errors import invalid, not_found

_ARN = re.compile(r"arn:aws:iot:(?P<region>[a-z0-9-]+):(?P<account>\d{12}):(?P<kind>thing|thinggroup)/(?P<name>.+)")
_RESOURCE_ARN = re.compile(r"arn:aws:iot:(?P<region>[a-z0-9-]*):(?P<account>\d*):(?P<kind>[a-zA-Z]+)/(?P<name>.+)")


@dataclass(frozen=True)
class Arns:
    region: str
    account: str

    def _arn(self, kind: str, name: str) -> str:
        return f"arn:aws:iot:{self.region}:{self.account}:{kind}/{name}"

    def thing(self, name: str) -> str:
        return self._arn("thing", name)

    def thing_group(self, name: str) -> str:
        return self._arn("thinggroup", name)

    def job(self, job_id: str) -> str:
        return self._arn("job", job_id)

    def job_template(self, template_id: str) -> str:
        return self._arn("jobtemplate", template_id)

    def parse_target(self, arn: str) -> tuple[str, str]:
        """('thing' | 'thinggroup', name) for a job target in this account and region."""
        match = _ARN.fullmatch(arn)
        if match is None:
            raise invalid(f"target '{arn}' is not a thing or thing group ARN")
        if (match["region"], match["account"]) != (self.region, self.account):
            raise not_found(f"target '{arn}' is not in account {self.account}, region {self.region}")
        return match["kind"], match["name"]

    def parse_resource(self, arn: str, member: str, kinds: tuple[str, ...]) -> tuple[str, str]:
        """(kind, id) of an ARN of this account and region naming one of `kinds` (e.g. 'job', 'jobtemplate')."""
        match = _RESOURCE_ARN.fullmatch(arn)
        if match is None:
            raise invalid(f"{member} '{arn}' is not an AWS IoT resource ARN")
        if match["kind"] not in kinds:
            raise invalid(f"{member} '{arn}' names a {match['kind']}; it must be a {' or '.join(kinds)} ARN")
        if match["kind"] == "jobtemplate" and not match["account"]:
            raise not_found(
                f"{member} '{arn}' names an AWS managed job template, which is not a resource of this account"
            )
        if (match["region"], match["account"]) != (self.region, self.account):
            raise not_found(f"{member} '{arn}' is not in account {self.account}, region {self.region}")
        return match["kind"], match["name"]
