"""EC2 behaviour moto 5.2.5 gets wrong, patched to what AWS does.

Imported for its side effects by server.py. Each patch names the AWS
behaviour it restores.
"""

from __future__ import annotations

from typing import Any

from moto.core.common_models import BaseModel  # noqa: F401  (keeps moto's import order)
from moto.ec2.models import launch_templates as lt_models
from moto.ec2.utils import parse_user_data


# AWS: DescribeLaunchTemplates returns the template's tags as they are now
# (CreateTags/DeleteTags on the lt- id change them). moto copies them once,
# at creation, into `tags`; read them from the tag store instead.
def _tags(self: Any) -> list[dict[str, str]]:
    return self.get_tags()


def _set_tags(self: Any, _value: Any) -> None:
    pass


lt_models.LaunchTemplate.tags = property(_tags, _set_tags)  # type: ignore[assignment]


# AWS: a launch template version made by CreateLaunchTemplateVersion launches
# instances with its user data like any other. moto parses UserData into its
# Base64EncodedString only in CreateLaunchTemplate, and its Auto Scaling
# asserts that type, so a group on version 2+ with user data cannot launch
# (an instance refresh after a user data change fails with AssertionError).
def _user_data(self: Any) -> Any:
    value = self.data.get("UserData")
    if isinstance(value, (str, bytes)):
        value = parse_user_data(value)
        self.data["UserData"] = value
    return value


lt_models.LaunchTemplateVersion.user_data = property(_user_data)  # type: ignore[assignment]
