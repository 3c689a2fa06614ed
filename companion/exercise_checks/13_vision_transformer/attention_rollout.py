from otter.test_files import test_case

OK_FORMAT = False

name = "attention_rollout"
points = None

@test_case(points=1, hidden=False)
def test_attention_rollout_small(attention_rollout):
    from companion.exercises import vision_transformer as ex
    ex.check_attention_rollout_small(attention_rollout)

