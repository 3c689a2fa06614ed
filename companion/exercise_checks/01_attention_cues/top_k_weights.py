from otter.test_files import test_case

OK_FORMAT = False

name = "top_k_weights"
points = None

@test_case(points=1, hidden=False)
def test_top_k_weights_values(top_k_weights):
    from companion.exercises import attention_cues as ex
    ex.check_top_k_weights_values(top_k_weights)

