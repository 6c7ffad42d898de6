"""EndpointCertificate: the environment's wildcard TLS certificate for its endpoints' private DNS names.

One ACM certificate per environment, `*.<env>.<endpointDomain>`, validated through DNS records in the
configured Route 53 hosted zone. Every endpoint's load balancer serves it on its TLS listener.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

import pulumi
import pulumi_aws as aws


@dataclass(frozen=True)
class EndpointCertificateArgs:
    zone: str  # <env>.<endpointDomain>
    hosted_zone_id: str
    tags: Mapping[str, str] = field(default_factory=dict)


class EndpointCertificate(pulumi.ComponentResource):
    certificate_arn: pulumi.Output[str]

    def __init__(self, name: str, args: EndpointCertificateArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("private-endpoint:endpoint:EndpointCertificate", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        certificate = aws.acm.Certificate(
            f"{name}-cert", domain_name=f"*.{args.zone}", validation_method="DNS",
            key_algorithm="EC_prime256v1", tags=dict(args.tags), opts=child,
        )
        # A wildcard has one validation record; ACM names it through domain_validation_options.
        option = certificate.domain_validation_options[0]
        record = aws.route53.Record(
            f"{name}-validation", zone_id=args.hosted_zone_id, name=option.resource_record_name,
            type=option.resource_record_type, records=[option.resource_record_value], ttl=300,
            allow_overwrite=True, opts=child,
        )
        validation = aws.acm.CertificateValidation(
            f"{name}-validated", certificate_arn=certificate.arn, validation_record_fqdns=[record.fqdn], opts=child,
        )
        self.certificate_arn = validation.certificate_arn
        self.register_outputs({"certificateArn": self.certificate_arn})
