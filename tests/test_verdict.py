"""A yes/no answer's first word is decided by the evidence (#27): hand-written pairs, none from the corpus."""

import pytest

from rag.cite import NO, YES, Checked, Citation, settle_verdict, stance

PAIRS = [
    ("Is Norway a signatory of the treaty?", "Norway is a non-signatory of the treaty.", NO),
    ("Did the talks reach an agreement?", "The talks failed to reach an agreement.", NO),
    ("Did the council approve the budget?", "The council approved the budget in March.", YES),
    ("Did the council approve the budget?", "The council did not approve the budget.", NO),
    ("Has the bridge opened?", "The bridge has not opened yet.", NO),
    ("Did the bridge open in 1932?", "The bridge opened in 1932 after eight years.", YES),
    ("Did the bridge open in 1950?", "The bridge opened in 1932 after eight years.", None),
    ("Did Alice sign the letter?", "Bob signed the letter, though Alice refused to sign it.", NO),
    ("Is the river navigable?", "The river is unnavigable in summer.", NO),
    ("Did the company hire new staff?", "Ferries cross the harbour every twenty minutes.", None),
    ("Didn't the mayor resign?", "The mayor resigned on Friday.", YES),
    ("Does the library lend e-books?", "The library no longer lends e-books.", NO),
    ("Was the vaccine approved by the agency?", "The agency approved the vaccine in 2021.", YES),
    ("Is Python dynamically typed?", "Python is dynamically typed and garbage-collected.", YES),
    ("Does the function return a list?", "The function returns an iterator, not a list.", NO),
    ("Will the museum reopen?", "The museum will reopen in May, the director said.", YES),
    ("Did the team win the final?", "The team never won a final.", NO),
    ("Does the module support threads?", "The module supports not only threads but also processes.", YES),
    (
        "Has the agency abandoned the plan?",
        "The agency, which drew up the plan, reiterated its commitment to it.",
        None,
    ),
    ("Has the agency abandoned the plan?", "The agency has not abandoned the plan.", NO),
    ("Has every member state ratified the treaty?", "All member states except Norway have ratified the treaty.", NO),
    ("Did all the ministers attend the summit?", "Every minister apart from two attended the summit.", NO),
    ("Did all the ministers attend the summit?", "All the ministers attended the summit.", YES),
    ("Did the ministers attend the summit?", "The ministers, except two, attended the summit.", YES),
]


@pytest.mark.parametrize("question,sentence,expected", PAIRS)
def test_the_stance_of_a_sentence_to_a_yes_no_question(question, sentence, expected):
    assert stance(question, sentence) == expected


def _checked(text: str, quote: str) -> Checked:
    cite = Citation(n=1, chunk_id="c", source="s", title="t", text=quote, quote=quote, start=0, end=len(quote))
    parts = [(p.strip() + ("" if p.strip().endswith(".") else "."), True) for p in text.split(". ") if p.strip()]
    return Checked(text=text, citations=[cite], parts=parts)


def test_a_yes_whose_evidence_states_the_opposite_becomes_no():
    checked = settle_verdict(
        _checked("Yes. Norway is a non-signatory of the treaty [1].", "Norway is a non-signatory of the treaty."),
        "Is Norway a signatory of the treaty?",
    )
    assert checked.text.startswith("No. Norway is a non-signatory")
    assert checked.parts[0] == ("No.", True)


def test_a_yes_inside_the_first_sentence_is_replaced_too():
    checked = settle_verdict(
        _checked("Yes, the talks failed to reach an agreement [1].", "The talks failed to reach an agreement."),
        "Did the talks reach an agreement?",
    )
    assert checked.text == "No. The talks failed to reach an agreement [1]."


def test_an_answer_without_the_word_gets_it_when_the_evidence_is_clear():
    checked = settle_verdict(
        _checked("The council approved the budget in March [1].", "The council approved the budget in March."),
        "Did the council approve the budget?",
    )
    assert checked.text.startswith("Yes. The council approved")


def test_unclear_evidence_leaves_the_answer_as_the_model_wrote_it():
    text = "No. The bridge opened in 1932 [1]."
    checked = settle_verdict(
        _checked(text, "The bridge opened in 1932 after eight years."), "Did the bridge open in 1950?"
    )
    assert checked.text == text
