from otter.test_files import test_case

OK_FORMAT = False

name = "conv1d_as_attention"
points = None

@test_case(points=1, hidden=False)
def test_conv1d_as_attention_small(conv1d_as_attention):
    from companion.exercises import cnn_rnn_attention as ex
    ex.check_conv1d_as_attention_small(conv1d_as_attention)

