from otter.test_files import test_case

OK_FORMAT = False

name = "causal_mask"
points = None

@test_case(points=1, hidden=False)
def test_causal_mask_small(causal_mask):
    from companion.exercises import transformer_seq2seq as ex
    ex.check_causal_mask_small(causal_mask)

