"""ARNs of the resources iotjobs serves."""

from __future__ import annotations

import re
from dataclasses import dataclass

from iotjobs.domain.errors import invalid, not_found

_ARN = re.compile(r"arn:aws:iot:(?P<region>[a-z0-9-]+):(?P<account>\d{12}):(?P<kind>thing|thinggroup)/(?P<name>.+)")


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
