"""An owner invites someone from the project page; that person finds the invitation from the
navigation, accepts it, and only then is a member (issue 18, item 7)."""

import pytest
from playwright.sync_api import expect

from portal.accounts.models import Membership
from tests.e2e.test_registry_pages import sign_in

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_an_invitation_is_sent_found_and_accepted_in_the_browser(live_server, browser, page,
                                                                  shoot, project, users):
    sign_in(page, live_server.url, "olivia")
    page.goto(f"{live_server.url}/p/clinical-ml/")
    page.fill("input[aria-label='Username to invite']", "oscar")
    page.select_option("select[aria-label='Role']", "contributor")
    page.click("button:has-text('Invite')")
    expect(page.locator(".message.success")).to_contain_text(
        "If that account exists, it has been invited.")
    expect(page.locator("#open-invitations")).to_contain_text("oscar")
    shoot(page, "invitation-sent")
    assert not Membership.objects.filter(project=project, user=users["outsider"]).exists()

    context = browser.new_context(viewport={"width": 1400, "height": 900})
    try:
        invitee = context.new_page()
        sign_in(invitee, live_server.url, "oscar")
        expect(invitee.locator("#invitations")).to_contain_text("Clinical ML")
        invitee.click(".usernav >> text=Invitations")
        expect(invitee.locator("h1")).to_have_text("Invitations")
        shoot(invitee, "invitation-received")
        invitee.click("#open-invitations >> button:has-text('Accept')")
        expect(invitee.locator("h1")).to_contain_text("Clinical ML")
        expect(invitee.locator(".message.success")).to_contain_text(
            "You are now contributor of Clinical ML")
    finally:
        context.close()
    assert Membership.objects.get(project=project, user=users["outsider"]).role == "contributor"
