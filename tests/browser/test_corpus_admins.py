"""#29.4 in the page: with a login, a user who is not a corpus admin sees the Corpus tab read only, an admin sees its
controls (tests/test_corpus_admins.py checks the same on the server, over HTTP)."""

import pytest
from playwright.sync_api import expect

from ui.corpus import read_only

from ..helpers import log_in_page

pytestmark = pytest.mark.browser
SIGNED = "corpus/baltic-states-poland-finland-leave-ottawa-convention.md"


def test_a_user_who_is_not_an_admin_sees_the_corpus_tab_read_only(admins_served, browser):
    _, url = admins_served
    bob = browser.new_context(viewport={"width": 1400, "height": 900}).new_page()
    log_in_page(bob, url, "bob", "bob-pass-2")
    bob.get_by_role("tab", name="Corpus").click()
    expect(bob.locator("#corpus-table")).to_contain_text(SIGNED)
    expect(bob.locator("#corpus-status")).to_have_text(read_only(("alice",)))
    bob.wait_for_timeout(1500)  # the page's load events have run (an admin's controls appear by then)
    for control in ("#corpus-upload", "#corpus-reindex", "#corpus-document", "#corpus-remove"):
        assert not bob.locator(control).is_visible(), f"{control} is shown to bob"
    assert bob.locator("#corpus-upload input[type=file]").count() == 0

    alice = browser.new_context(viewport={"width": 1400, "height": 900}).new_page()
    log_in_page(alice, url, "alice", "alice-pass-1")
    alice.get_by_role("tab", name="Corpus").click()
    expect(alice.locator("#corpus-remove")).to_be_enabled()
    expect(alice.locator("#corpus-reindex")).to_be_enabled()
    expect(alice.locator("#corpus-status")).to_have_text("")
    assert alice.locator("#corpus-upload input[type=file]").count() == 1
