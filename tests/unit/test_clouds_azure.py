"""How an Azure message is put on one line: cut only at a word's end, an address never cut."""

from __future__ import annotations

from orchestrator.clouds.azure import _first_line


def test_a_long_message_is_cut_at_a_word_s_end_and_says_so() -> None:
    text = "Allocation failed.\nWe do not have sufficient capacity for the requested VM size in this region."
    line = _first_line(text, limit=40)
    assert line == "Allocation failed. We do not have …"
    assert _first_line(text) == " ".join(text.split())  # under the limit: whole, on one line


def test_an_address_across_the_limit_is_kept_whole_and_what_follows_it_is_cut() -> None:
    url = "https://aka.ms/ProdportalCRP/#blade/Microsoft_Azure_Capacity/UsageAndQuota.ReactView"
    line = _first_line(f"Submit a request for Quota increase at {url} by specifying parameters", limit=60)
    assert line == f"Submit a request for Quota increase at {url} …"


def test_one_word_longer_than_the_limit_is_cut_at_the_limit() -> None:
    assert _first_line("x" * 50, limit=10) == "x" * 10 + " …"
