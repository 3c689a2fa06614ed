from otter.test_files import test_case

OK_FORMAT = False

name = "layers_to_reach"
points = None

@test_case(points=1, hidden=False)
def test_layers_to_reach_small(layers_to_reach):
    from companion.exercises import cnn_rnn_attention as ex
    ex.check_layers_to_reach_small(layers_to_reach)

