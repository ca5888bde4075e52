"""Start quay's build for a pushed tag when its build trigger did not fire (`wait-image --start-build`).

A trigger misses a tag when it is disabled, its tag regex does not match, or the git host's webhook
was lost during an outage. quay can start a trigger's build for a ref by hand; that needs an OAuth
token with repo:admin (QUAY_TOKEN). Every refusal says why in quay's words and what to do next;
the token never appears in a message.
"""

from __future__ import annotations

from typing import Any

from manual_deploy.console import Output
from manual_deploy.errors import OperationFailed, Refused
from manual_deploy.registry import NeedsAdmin, QuayClient, QuayRejected, TransientError

# An SCM trigger builds exactly the ref we name; prefer one of these over a custom-git trigger.
PREFERRED_SERVICES = ("github", "gitlab", "bitbucket")
DISABLED_REASONS = {
    "user_toggled": "disabled by a user",
    "successive_build_failures": "disabled after successive build failures",
    "successive_build_internal_errors": "disabled after successive internal build errors",
}
TOKEN_HINT = "an OAuth token with repo:admin"


def describe_disabled(trigger: dict[str, Any]) -> str:
    """quay's `disabled_reason` in words."""
    reason = trigger.get("disabled_reason")
    return DISABLED_REASONS.get(reason, f"disabled ({reason})" if reason else "disabled")


def pick_trigger(triggers: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The enabled, set-up trigger to start: an SCM one (GitHub first) before any other."""
    usable = [t for t in triggers if t.get("enabled") and t.get("is_active", True) is not False and t.get("id")]
    rank = lambda t: PREFERRED_SERVICES.index(t.get("service")) if t.get("service") in PREFERRED_SERVICES else len(PREFERRED_SERVICES)  # noqa: E731
    return min(usable, key=rank) if usable else None


def start_build(quay: QuayClient, repository: str, tag: str, out: Output, commit: str | None = None, *,
                image: str | None = None, rerun: str = "manual-deploy wait-image --start-build") -> dict[str, Any]:
    """Start the repository's build trigger for `tag`; return the build quay started.

    `rerun` is the command to try again with (the `next:` line of a refusal); `commit` lets a
    custom-git trigger, which takes only a SHA, be started too.
    """
    image = image or f"{repository}:{tag}"
    page = quay.builds_page(repository)
    if not quay.credentials.quay_token:
        raise Refused(f"--start-build needs QUAY_TOKEN, {TOKEN_HINT}",
                      hint=f"generate one (quay: your organization → Applications → Generate Token, with Administer Repositories), "
                           f"export QUAY_TOKEN and run `{rerun}`")
    triggers = _call(lambda: quay.triggers(repository), repository, page, rerun)
    trigger = _choose(triggers, repository, tag, page, out, rerun)
    build = _call(lambda: quay.start_trigger(repository, trigger["id"], tag, commit, service=str(trigger.get("service"))),
                  repository, page, rerun, trigger=trigger)
    out.step(f"started build {str(build['id'])[:8]} of {image} with trigger {trigger['id'][:8]} ({trigger.get('service')})")
    if trigger.get("service") not in PREFERRED_SERVICES:
        out.warn(f"a {trigger.get('service')} trigger names its tags by its own template: {tag} may not be among them")
    return build


def _choose(triggers: list[dict[str, Any]], repository: str, tag: str, page: str, out: Output, rerun: str) -> dict[str, Any]:
    """The trigger to start, or a refusal that says why none can be."""
    if not triggers:
        raise Refused(f"{repository} has no build trigger; set one up on quay.io or push the image yourself",
                      hint=f"add a build trigger on {page}, or build and push {repository}:{tag} by hand")
    trigger = pick_trigger(triggers)
    if trigger is None:
        states = "; ".join(f"{t.get('service', '?')} trigger {str(t.get('id', '?'))[:8]} {_state(t)}" for t in triggers)
        raise Refused(f"no enabled build trigger on {repository}: {states}",
                      hint=f"enable it on {page} (the trigger's menu), then `{rerun}`")
    enabled = [t for t in triggers if t is not trigger and t.get("enabled")]
    if enabled:
        others = ", ".join(f"{t['id'][:8]} ({t.get('service')})" for t in enabled if t.get("id"))
        out.info(f"  {len(enabled) + 1} enabled triggers; using {trigger['id'][:8]} ({trigger.get('service')}), not {others}")
    return trigger


def _state(trigger: dict[str, Any]) -> str:
    if not trigger.get("enabled"):
        return f"is {describe_disabled(trigger)}"
    return "is not fully set up (quay says it is not active)"


def _call(action, repository: str, page: str, rerun: str, *, trigger: dict[str, Any] | None = None):
    """Run one trigger API call; turn quay's refusals and outages into our errors with a next step."""
    which = f"trigger {trigger['id'][:8]}" if trigger else f"the build triggers of {repository}"
    try:
        return action()
    except NeedsAdmin:
        raise Refused(f"QUAY_TOKEN may not start builds of {repository}: quay wants {TOKEN_HINT}",
                      hint=f"use a token with the repo:admin scope (Administer Repositories) for {repository}, then `{rerun}`") from None
    except QuayRejected as exc:
        raise Refused(f"quay refused to start {which} for {repository}: {exc.message}",
                      hint=f"check the trigger on {page}, then `{rerun}`") from None
    except Refused as exc:  # the client's own refusal (a custom-git trigger without a commit)
        raise Refused(exc.message, hint=f"pass the tag's commit: run it in the checkout `manual-deploy tag` recorded, or start the build on {page}") from None
    except TransientError as exc:
        started = " (a build may have started: the re-run follows it)" if trigger else ""
        raise OperationFailed(f"could not reach quay to start a build of {repository}: {exc.message}{started}",
                              hint=f"re-run `{rerun}` in a minute") from None
    except OperationFailed as exc:
        raise OperationFailed(exc.message, hint=f"check the repository's builds on {page}, then `{rerun}`") from None
