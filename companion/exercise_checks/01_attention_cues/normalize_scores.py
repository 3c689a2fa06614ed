from otter.test_files import test_case

OK_FORMAT = False

name = "normalize_scores"
points = None

@test_case(points=1, hidden=False)
def test_normalize_scores_values(normalize_scores):
    from companion.exercises import attention_cues as ex
    ex.check_normalize_scores_values(normalize_scores)

