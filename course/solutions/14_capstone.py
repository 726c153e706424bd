# Solutions of lab 14, injected by course/run_labs.py in place of each exercise cell.

# %% ex:14.1
event_map = "user_id=customer,item_id=sku,event_type=action,ts=when"
item_map = "item_id=sku,title=product_name,brand=maker,category=dept,description=blurb"
type_map = "pv=view,cart=cart,buy=purchase"

# %% ex:14.2
def pick_model(results):
    return max(results, key=lambda r: r["metrics"]["valid"]["NDCG@10"])["model"]

# %% ex:14.3
def same_dept_share(history_depts, rec_depts):
    liked = set(history_depts)
    return sum(d in liked for d in rec_depts) / len(rec_depts)
