from bench_py.config import default_utterances


def test_ten_default_utterances_of_varied_length():
    utterances = default_utterances()
    assert len(utterances) == 10
    words = sorted(len(u.split()) for u in utterances)
    assert words[0] <= 4 and words[-1] >= 40  # short replies and a long paragraph
    assert len(set(utterances)) == 10
