from otter.test_files import test_case

OK_FORMAT = False

name = "additive_scores"
points = None

@test_case(points=1, hidden=False)
def test_additive_scores_small(additive_scores):
    from companion.exercises import attention_scoring as ex
    ex.check_additive_scores_small(additive_scores)

