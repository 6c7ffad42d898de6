"""The platform program, as `pulumi up -s <env>` runs it."""

import pulumi

from privend.config import load_pulumi_config
from privend.platform import platform_program

for _name, _value in platform_program(load_pulumi_config()).items():
    pulumi.export(_name, _value)
