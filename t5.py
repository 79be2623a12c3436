from openai import OpenAI
import numpy as np
c=OpenAI(base_url="http://127.0.0.1:18931/v1", api_key="x", max_retries=0)
print(c.models.retrieve("sentence-transformers/all-MiniLM-L6-v2").id)
r=c.embeddings.create(model="sentence-transformers/all-MiniLM-L6-v2", input=["hello","world"])
print(len(r.data[0].embedding), r.usage)
r=c.embeddings.create(model="sentence-transformers/all-MiniLM-L6-v2", input="hello", dimensions=4)
print(r.data[0].embedding)
