from otter.test_files import test_case

OK_FORMAT = False

name = "cached_attention_step"
points = None

@test_case(points=1, hidden=False)
def test_cached_attention_step_small(cached_attention_step):
    from companion.exercises import transformer_seq2seq as ex
    ex.check_cached_attention_step_small(cached_attention_step)

