from otter.test_files import test_case

OK_FORMAT = False

name = "local_attention_mask"
points = None

@test_case(points=1, hidden=False)
def test_local_attention_mask_small(local_attention_mask):
    from companion.exercises import long_sequences as ex
    ex.check_local_attention_mask_small(local_attention_mask)

