from otter.test_files import test_case

OK_FORMAT = False

name = "cross_attention"
points = None

@test_case(points=1, hidden=False)
def test_cross_attention_small(cross_attention):
    from companion.exercises import transformer_seq2seq as ex
    ex.check_cross_attention_small(cross_attention)

