"""Reading a question before retrieving: its kind and parts, from grammar alone (questions on no corpus here)."""

import pytest

from rag.question import read


@pytest.mark.parametrize(
    "question, kind",
    [
        ("When did the museum open?", "fact"),
        ("How many bridges cross the river?", "fact"),  # "how many" asks for a number, not an explanation
        ("Is the museum open on Mondays?", "yes_no"),
        ("Didn't the council reject the plan?", "yes_no"),
        ("According to the annual report, has the library closed?", "yes_no"),
        ("Is it true that the ferry is free?", "yes_no"),
        ("Why did the council close the library?", "why"),
        ("How does the tide affect the ferry timetable?", "why"),
        ("What reasons does the report give for the delay?", "why"),
        ("Do the two reports agree on the cost?", "compare"),
        ("What does each source say about parking?", "compare"),
        ("How do the guide and the report differ on opening hours?", "compare"),
        ("Who designed the bridge, and when was it finished?", "multi_part"),
        ("Which towns joined the scheme and why?", "multi_part"),
        ("What is the toll? And who collects it?", "multi_part"),
    ],
)
def test_the_kind_follows_the_grammar_of_the_question(question, kind):
    assert read(question).kind == kind


def test_a_question_in_two_parts_is_split_and_a_bare_second_part_keeps_the_whole_question():
    r = read("Who designed the bridge, and when was it finished?")
    assert r.parts == ["Who designed the bridge?", "when was it finished?"]
    r = read("Which towns joined the scheme and why?")
    assert r.parts == ["Which towns joined the scheme?", "Which towns joined the scheme and why?"]
    assert read("Who designed the bridge?").parts == ["Who designed the bridge?"]
    # "and" inside a noun phrase is not a second question
    assert read("What did the mayor and the council decide?").parts == ["What did the mayor and the council decide?"]


def test_instructions_name_the_shape_each_kind_needs():
    assert read("When did the museum open?").instructions() == ""
    assert not read("When did the museum open?").deep
    assert read("Is the museum open on Mondays?").instructions().startswith('Start the answer with "Yes" or "No"')
    assert "every reason" in read("Why did the council close the library?").instructions()
    assert "each source" in read("Do the two reports agree on the cost?").instructions()
    assert "2 parts" in read("Who designed the bridge, and when was it finished?").instructions()
    assert all(
        read(q).deep for q in ("Why did it close?", "Do the two reports agree on the cost?", "Who built it, and when?")
    )
