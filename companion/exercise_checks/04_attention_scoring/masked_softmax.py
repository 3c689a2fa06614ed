from otter.test_files import test_case

OK_FORMAT = False

name = "masked_softmax"
points = None

@test_case(points=1, hidden=False)
def test_masked_softmax_small(masked_softmax):
    from companion.exercises import attention_scoring as ex
    ex.check_masked_softmax_small(masked_softmax)

