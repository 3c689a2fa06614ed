from otter.test_files import test_case

OK_FORMAT = False

name = "scaled_dot_product_attention"
points = None

@test_case(points=1, hidden=False)
def test_scaled_dot_product_small(scaled_dot_product_attention):
    from companion.exercises import attention_scoring as ex
    ex.check_scaled_dot_product_small(scaled_dot_product_attention)

