"""Accessibility audits and screenshots of pages open in Chromium (browser tests only).

The audit is axe-core, vendored under ``vendor/axe-core`` (its README says which version
and under what licence), injected into the page: never served by the site.
"""

from __future__ import annotations

import os
from pathlib import Path

AXE = Path(__file__).with_name("vendor") / "axe-core" / "axe.min.js"
#: Impacts that fail a test (axe's scale: minor, moderate, serious, critical).
FAILING_IMPACTS = ("serious", "critical")
#: Where screenshots go (gitignored): a person looks at them after a run.
ARTIFACTS = Path(os.environ.get("TEST_ARTIFACTS", Path(__file__).parents[2] / "test-artifacts"))


async def axe_violations(page, *, impacts=FAILING_IMPACTS) -> list[dict]:
    """Run axe-core on the page as it is now; return the violations of these impacts.

    Each is ``{"id", "impact", "help", "nodes": [target selectors]}``, short enough to read
    in a failed assertion.
    """
    if not await page.evaluate("typeof window.axe !== 'undefined'"):
        await page.add_script_tag(path=str(AXE))
    result = await page.evaluate(
        "async () => await axe.run(document, {resultTypes: ['violations']})"
    )
    return [
        {
            "id": violation["id"],
            "impact": violation["impact"],
            "help": violation["help"],
            "nodes": [node["target"] for node in violation["nodes"]][:5],
        }
        for violation in result["violations"]
        if violation["impact"] in impacts
    ]


async def save_screenshot(page, name: str) -> Path:
    """Save a PNG of what the page shows (its viewport) under ``test-artifacts/screenshots/``."""
    path = ARTIFACTS / "screenshots" / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(path), full_page=False)
    return path
