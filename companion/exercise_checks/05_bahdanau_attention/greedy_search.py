from otter.test_files import test_case

OK_FORMAT = False

name = "greedy_search"
points = None

@test_case(points=1, hidden=False)
def test_greedy_search_small(greedy_search):
    from companion.exercises import bahdanau_attention as ex
    ex.check_greedy_search_small(greedy_search)

