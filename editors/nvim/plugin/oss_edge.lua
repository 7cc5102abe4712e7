-- :OssEdge {explain|status|restart} and <Plug> mappings. Nothing is mapped by default.
if vim.g.loaded_oss_edge then
  return
end
vim.g.loaded_oss_edge = true

local subcommands = {
  explain = function(opts)
    require('oss_edge').explain({ line1 = opts.line1, line2 = opts.line2, reasoning = opts.fargs[2] })
  end,
  status = function()
    require('oss_edge').status()
  end,
  restart = function()
    require('oss_edge').restart()
  end,
}

vim.api.nvim_create_user_command('OssEdge', function(opts)
  local action = subcommands[opts.fargs[1] or '']
  if not action then
    vim.notify('usage: :OssEdge explain [low|medium|high] | status | restart', vim.log.levels.ERROR)
    return
  end
  action(opts)
end, {
  nargs = '+',
  range = true,
  desc = 'oss-edge: explain the selection, show status, restart',
  complete = function(arg_lead, line)
    if line:match('explain%s+%S*$') then
      return vim.tbl_filter(function(e)
        return e:find(arg_lead, 1, true) == 1
      end, { 'low', 'medium', 'high' })
    end
    return vim.tbl_filter(function(name)
      return name:find(arg_lead, 1, true) == 1
    end, vim.tbl_keys(subcommands))
  end,
})

vim.keymap.set('x', '<Plug>(oss-edge-explain)', ':OssEdge explain<CR>', { silent = true, desc = 'oss-edge: explain selection' })
vim.keymap.set('n', '<Plug>(oss-edge-status)', '<Cmd>OssEdge status<CR>', { desc = 'oss-edge: status' })
