"""SNS behaviour moto 5.2.5 gets wrong, patched to what AWS does.

Imported for its side effects by server.py.

- Confirmation. AWS: an e-mail or HTTP(S) subscription waits for the
  endpoint to confirm; until then ListSubscriptionsByTopic shows its
  SubscriptionArn as `PendingConfirmation`, and it can be neither changed nor
  unsubscribed. moto confirms everything at once. `confirm()` (control API
  POST /_craftlb/sns/confirm) plays the endpoint's part.
"""

from __future__ import annotations

from typing import Any

from moto.core.responses import ActionResult
from moto.sns import models as sns_models
from moto.sns import responses as sns_responses
from moto.sns.exceptions import SNSInvalidParameter

PENDING_PROTOCOLS = ("email", "email-json", "http", "https")

_orig_subscribe = sns_models.SNSBackend.subscribe


def subscribe(self: Any, topic_arn: str, endpoint: str, protocol: str) -> Any:
    existing = self._find_subscription(topic_arn, endpoint, protocol)
    sub = _orig_subscribe(self, topic_arn, endpoint, protocol)
    if existing is None and protocol in PENDING_PROTOCOLS:
        sub.craftlb_pending = True
        sub.attributes["PendingConfirmation"] = "true"
    return sub


def list_subscriptions_by_topic(self: Any) -> ActionResult:
    topic_arn = self._get_param("TopicArn")
    subs, next_token = self.backend.list_subscriptions_by_topic(topic_arn, next_token=self._get_param("NextToken"))
    items = [{"SubscriptionArn": "PendingConfirmation" if getattr(s, "craftlb_pending", False) else s.arn,
              "Owner": s.attributes.get("Owner", self.current_account), "Protocol": s.protocol,
              "Endpoint": s.endpoint, "TopicArn": s.topic.arn} for s in subs]
    return ActionResult({"Subscriptions": items, "NextToken": next_token})


_orig_unsubscribe = sns_models.SNSBackend.unsubscribe


def unsubscribe(self: Any, subscription_arn: str) -> None:
    if subscription_arn == "PendingConfirmation" or not subscription_arn.startswith("arn:"):
        raise SNSInvalidParameter("Invalid parameter: SubscriptionArn Reason: An ARN must have at least 6 elements, not 1")
    _orig_unsubscribe(self, subscription_arn)


def confirm(endpoint: str | None = None) -> list[str]:
    """Confirms pending subscriptions (of `endpoint`, or all); returns their ARNs."""
    done = []
    for by_region in sns_models.sns_backends.values():
        for backend in by_region.values():
            for sub in backend.subscriptions.values():
                if getattr(sub, "craftlb_pending", False) and endpoint in (None, sub.endpoint):
                    sub.craftlb_pending = False
                    sub.attributes["PendingConfirmation"] = "false"
                    done.append(sub.arn)
    return done


sns_models.SNSBackend.subscribe = subscribe
sns_models.SNSBackend.unsubscribe = unsubscribe
sns_responses.SNSResponse.list_subscriptions_by_topic = list_subscriptions_by_topic
